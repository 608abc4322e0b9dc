#!/usr/bin/env bash
# Generates assets/sample/sample.mp4, the small test video used by vcdn's
# tests, examples and benchmarks. The committed sample.mp4 was produced by
# this script.
#
# What it makes: a 10 s, 640x360, 25 fps MP4 made only from ffmpeg's built-in
# lavfi sources (no external media, no fonts):
#   - video: H.264 (libx264, main profile, yuv420p), the moving "testsrc2"
#            pattern, which already draws a running timestamp and frame
#            number in its top-left corner; a keyframe every 2 s (50 frames,
#            no scene-cut keyframes) so it can be cut into 2 s segments;
#            ~300 kbit/s.
#   - audio: AAC-LC stereo, 48 kHz, 64 kbit/s, a 440 Hz sine tone.
#   - container: MP4 with the 'moov' box before 'mdat' (+faststart), no
#            metadata, bitexact muxing, so the output is reproducible for a
#            given ffmpeg/x264 build.
# The result is about 0.4-0.5 MB.
#
# Usage: bash assets/sample/make-sample.sh [OUTPUT]   (default: sample.mp4 next to this script)
# Requires: ffmpeg with libx264 (Debian/Ubuntu: apt-get install ffmpeg)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/sample.mp4}"

ffmpeg -hide_banner -nostdin -loglevel error -y \
  -f lavfi -i "testsrc2=size=640x360:rate=25:duration=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=10" \
  -map 0:v:0 -map 1:a:0 -map_metadata -1 -map_chapters -1 \
  -c:v libx264 -profile:v main -pix_fmt yuv420p -preset medium -threads 1 \
  -b:v 300k -maxrate 400k -bufsize 800k \
  -g 50 -sc_threshold 0 \
  -c:a aac -b:a 64k -ac 2 -ar 48000 \
  -flags +bitexact -fflags +bitexact \
  -movflags +faststart \
  -t 10 \
  "$out"

echo "wrote $out ($(stat -c %s "$out") bytes)"
