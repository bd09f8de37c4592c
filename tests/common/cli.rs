//! The `guestlist` binary run as the admin CLI, and a server for it to talk
//! to.

use std::process::{Command, Output};
use std::sync::Arc;

use guestlist::store::Store;

/// Serves `store` on a loopback port, in this process; returns the base URL.
pub async fn serve(store: Arc<dyn Store>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(guestlist::http::run(
        listener,
        super::app_for(store, 64 << 20),
        std::future::pending(),
    ));
    format!("http://{addr}")
}

/// `guestlist` with `args`, to be given its environment by the caller.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_guestlist"));
    cmd.args(args);
    cmd
}

/// Runs `cmd` to its end off the async workers.
pub async fn output(mut cmd: Command) -> Output {
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
