//! Exit codes per `docs/cli.md`: a workspace or session named on the
//! command line that does not exist, or a name already taken, is a runtime
//! failure: exit 1 with a one-line message, in every subcommand.

mod support;

use support::dirs;
use support::process::{BoundaryLines, warden};
use support::server::ServerProcess;

fn one_line(what: &str, output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{what}: {stderr}");
    assert!(output.stdout.is_empty(), "{what}: nothing on stdout");
    assert_eq!(
        stderr.matches('\n').count(),
        1,
        "{what}: one line: {stderr:?}"
    );
    assert!(stderr.ends_with('\n'), "{what}: {stderr:?}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_found_and_taken_are_exit_1_with_one_line() {
    let dirs = dirs();
    let mut server = ServerProcess::start(&dirs.server, &[], BoundaryLines::Count).await;
    server.create_workspace("dev", "alice", &[]).await;

    let taken = server
        .workspace(&["create", "--name", "dev", "--owner", "bob"])
        .await;
    let e = one_line("create a taken name", &taken);
    assert!(e.contains("\"dev\"") && e.contains("already"), "{e}");
    for args in [&["delete", "nope"][..], &["rotate-token", "nope"][..]] {
        let output = server.workspace(args).await;
        let e = one_line(&format!("{args:?}"), &output);
        assert!(e.contains("\"nope\""), "{e}");
    }
    for args in [
        &["--workspace", "nope"][..],
        &["sessions", "--workspace", "nope"][..],
        &["session", "no-such-session", "--workspace", "dev"][..],
    ] {
        let output = warden()
            .arg("logs")
            .args(args)
            .arg("--data-dir")
            .arg(&dirs.server)
            .output()
            .await
            .unwrap();
        one_line(&format!("logs {args:?}"), &output);
    }
    server.stop().await;

    // A stopped server's data dir: one line saying how to start it.
    for args in [&[][..], &["sessions", "--workspace", "dev"][..]] {
        let output = warden()
            .arg("logs")
            .args(args)
            .arg("--data-dir")
            .arg(&dirs.server)
            .output()
            .await
            .unwrap();
        let e = one_line("logs of a stopped server", &output);
        assert!(e.contains("is not running"), "{e}");
        assert!(
            e.contains(&format!(
                "`warden server --data-dir {}`",
                dirs.server.display()
            )),
            "{e}"
        );
    }
}
