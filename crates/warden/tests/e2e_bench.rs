//! `warden bench` runs the real pipeline (agent and server as its children)
//! and accounts for every record: a line timed per record, CPU and memory
//! read for each process. (Speed itself is not asserted: that is the
//! bench's output, not a test's.)

mod support;

use support::dirs;
use support::process::warden;

#[tokio::test]
async fn a_small_bench_run_reports_every_record() {
    let dirs = dirs();
    let output = warden()
        .args([
            "bench",
            "--clients",
            "3",
            "--records",
            "3000",
            "--record-size",
            "300",
            "--batch-size",
            "50",
            "--json",
            "--work-dir",
        ])
        .arg(&dirs.root)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {stderr}"));
    assert_eq!(report["records"], 3000);
    assert_eq!(report["clients"], 3);
    assert_eq!(report["record_size"], 300);
    assert_eq!(report["latency"]["samples"], 3000, "{report}");
    assert!(report["records_per_second"].as_f64().unwrap() > 0.0);
    let p50 = report["latency"]["p50_ms"].as_f64().unwrap();
    let p99 = report["latency"]["p99_ms"].as_f64().unwrap();
    let max = report["latency"]["max_ms"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{report}");
    // The stages come from the stored rows: one sample per record each.
    for stage in ["client", "agent", "to_server"] {
        assert_eq!(report["stages"][stage]["samples"], 3000, "{report}");
    }
    let to_server = report["stages"]["to_server"]["p50_ms"].as_f64().unwrap();
    assert!(to_server <= max, "{report}");
    // The server counted the agent's calls: at least one, at most one per
    // record, and the records a call carries add up to the run's.
    let calls = report["calls"]["calls"].as_u64().unwrap();
    assert!((1..=3000).contains(&calls), "{report}");
    let per_call = report["calls"]["records_per_call"].as_f64().unwrap();
    assert!((per_call * calls as f64 - 3000.0).abs() < 1e-6, "{report}");
    // Its CPU per call is the CPU per record times the records a call.
    for process in ["server", "agent"] {
        let per_record = report[process]["cpu_us_per_record"].as_f64().unwrap();
        let ms_per_call = report["calls"][format!("{process}_cpu_ms_per_call")]
            .as_f64()
            .unwrap();
        let expected = per_record * per_call / 1e3;
        assert!(
            (ms_per_call - expected).abs() <= 1e-6 * expected.max(1.0),
            "{process}: {report}"
        );
    }
    // CPU time is read in clock ticks (10 ms): one process's share of a
    // run this small can be a single tick or none, so each is checked for
    // being read and accounted per record, and the three together for
    // having been measured at all (the parsing itself has a unit test).
    let mut cpu_total = 0.0;
    for process in ["agent", "server", "clients_process"] {
        assert!(
            report[process]["peak_rss_mib"].as_f64().unwrap() > 1.0,
            "{process}: {report}"
        );
        let cpu = report[process]["cpu_seconds"].as_f64().unwrap();
        assert!(cpu.is_finite() && cpu >= 0.0, "{process}: {report}");
        let per_record = report[process]["cpu_us_per_record"].as_f64().unwrap();
        assert!(
            (per_record - cpu * 1e6 / 3000.0).abs() < 1e-6,
            "{process}: {report}"
        );
        cpu_total += cpu;
    }
    assert!(cpu_total > 0.0, "no CPU time measured: {report}");
    // The work dir is removed, and the children are gone with it.
    assert_eq!(std::fs::read_dir(&dirs.root).unwrap().count(), 0);
}

#[tokio::test]
async fn bench_refuses_bad_flags() {
    let output = warden()
        .args(["bench", "--store", "mysql://db"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--store"));
}
