//! Measures how long a replica takes to rebuild its index from disk at
//! start, for 100,000 chunks (1,000 objects of 100 chunks; the chunk files
//! are sparse, so the measurement needs no real disk space). Not a test;
//! run it with
//!
//! ```sh
//! cargo test --release -p vcdn-replica --test rebuild -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use http::HeaderValue;
use vcdn_replica::disk::{self, MetaFile};
use vcdn_replica::freshness::Freshness;
use vcdn_replica::object::Meta;

#[test]
#[ignore = "a measurement, run by hand"]
fn index_rebuild_of_100k_chunks() {
    let chunk: u64 = 1024 * 1024;
    let cache = tempfile::tempdir().unwrap();
    let fresh = Freshness {
        received: tokio::time::Instant::now(),
        initial_age: Duration::ZERO,
        lifetime: Duration::from_secs(3600),
    };
    let created = Instant::now();
    for object in 0..1000u64 {
        let meta = Meta {
            status: http::StatusCode::OK,
            total: 100 * chunk,
            etag: Some(HeaderValue::from_str(&format!("\"v{object}\"")).unwrap()),
            last_modified: None,
            headers: vec![(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("video/mp4"),
            )],
            ranged: true,
            vary: vec![],
        };
        let dir = cache
            .path()
            .join("objects")
            .join(format!("{:02x}", object % 256))
            .join(format!("o{object}"));
        std::fs::create_dir_all(&dir).unwrap();
        disk::write_meta(
            &dir,
            &MetaFile::new(&format!("/v{object}.mp4"), &meta, chunk, &fresh),
        )
        .unwrap();
        for index in 0..100 {
            let file = std::fs::File::create(dir.join(format!("c{index}"))).unwrap();
            file.set_len(chunk).unwrap();
        }
    }
    println!(
        "created 100,000 chunk files in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // Drop the page cache's knowledge of nothing: this measures a warm
    // dentry cache, as after a process restart (not a reboot).
    let started = Instant::now();
    let (loaded, report) = disk::rebuild(cache.path(), chunk).unwrap();
    let took = started.elapsed();
    assert_eq!(report.chunks, 100_000);
    assert_eq!(loaded.len(), 1000);
    println!(
        "index rebuild of {} chunks in {} objects: {:.0} ms",
        report.chunks,
        report.objects,
        took.as_secs_f64() * 1000.0
    );
}
