//! Measures what the chunk size costs, to choose its default. Not a test
//! (it asserts nothing and takes a while); run it with
//!
//! ```sh
//! cargo test -p vcdn-replica --test chunk_size -- --ignored --nocapture
//! ```
//!
//! Behind an origin with a 50 ms first byte and a 20 MiB/s link, for each
//! chunk size it times a cold sequential download of a 64 MiB file, a cold
//! 1000-byte seek into its middle, and a cold open-ended seek (what a
//! browser sends) until its first MiB arrived, and counts the origin bytes.

use std::time::{Duration, Instant};

use vcdn_test_support::TestCluster;
use vcdn_test_support::origin::Content;

const MIB: u64 = 1024 * 1024;

struct Row {
    chunk: u64,
    sequential: Duration,
    seek: Duration,
    seek_origin_bytes: u64,
    open_seek_first_mib: Duration,
}

async fn measure(chunk: u64) -> Row {
    let content = Content::Virtual {
        len: 64 * MIB,
        seed: 42,
    };
    let fresh = || async {
        let cluster = TestCluster::new();
        let origin = cluster.start_test_origin().await;
        origin.put("/f.mp4", content.clone());
        origin.set_first_byte_delay(Duration::from_millis(50));
        origin.set_rate(20 * MIB);
        let config = vcdn_replica::Config {
            chunk_bytes: chunk,
            ..Default::default()
        };
        let replica = cluster.start_replica(&origin.url(), config).await;
        let url = format!("{}/f.mp4", replica.url());
        (cluster, origin, replica, url)
    };

    let (cluster, _origin, _replica, url) = fresh().await;
    let started = Instant::now();
    let body = cluster
        .client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let sequential = started.elapsed();
    assert_eq!(body.len() as u64, content.len());

    let (cluster, origin, _replica, url) = fresh().await;
    let started = Instant::now();
    let middle = 32 * MIB + 12_345;
    let range = format!("bytes={}-{}", middle, middle + 999);
    let response = cluster
        .client()
        .get(&url)
        .header("range", range)
        .send()
        .await
        .unwrap();
    assert_eq!(response.bytes().await.unwrap().len(), 1000);
    let seek = started.elapsed();
    // What the replica asked of the origin (the fill goes on after the
    // viewer has its 1000 bytes).
    let seek_origin_bytes = origin
        .requests()
        .iter()
        .filter_map(|r| {
            r.range
                .as_deref()?
                .strip_prefix("bytes=")?
                .split_once('-')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
        })
        .map(|(a, b)| {
            b.parse::<u64>().unwrap().min(content.len() - 1) + 1 - a.parse::<u64>().unwrap()
        })
        .sum::<u64>();

    let (cluster, _origin, _replica, url) = fresh().await;
    let started = Instant::now();
    let mut response = cluster
        .client()
        .get(&url)
        .header("range", format!("bytes={middle}-"))
        .send()
        .await
        .unwrap();
    let mut got = 0;
    while got < MIB {
        got += response.chunk().await.unwrap().unwrap().len() as u64;
    }
    let open_seek_first_mib = started.elapsed();

    Row {
        chunk,
        sequential,
        seek,
        seek_origin_bytes,
        open_seek_first_mib,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn chunk_size_tradeoffs() {
    let mut rows = Vec::new();
    for chunk in [256 * 1024, MIB, 2 * MIB, 4 * MIB, 8 * MIB] {
        rows.push(measure(chunk).await);
    }
    println!();
    println!("origin: 50 ms first byte, 20 MiB/s; file 64 MiB (ideal sequential: 3.25 s)");
    println!(
        "| chunk | cold sequential 64 MiB | cold 1000-byte seek | origin bytes asked | cold open seek, first MiB |"
    );
    println!("|---|---|---|---|---|");
    for row in rows {
        println!(
            "| {} KiB | {:.2} s | {} ms | {:.1} MiB | {} ms |",
            row.chunk / 1024,
            row.sequential.as_secs_f64(),
            row.seek.as_millis(),
            row.seek_origin_bytes as f64 / MIB as f64,
            row.open_seek_first_mib.as_millis(),
        );
    }
}
