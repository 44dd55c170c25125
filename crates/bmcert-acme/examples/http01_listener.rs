//! An HTTP-01 listener on its own, for tests that constrain it as a process (file-descriptor
//! limits): `http01_listener TOKEN KEY_AUTHORIZATION` binds 127.0.0.1 on a free port, prints
//! `listening on ADDR`, and serves the one token until standard input closes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test helper program

use std::io::{BufRead as _, Write as _};
use std::sync::Arc;

use bmcert_acme::{ChallengeBoard, Http01Listener};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (token, key_authorization) = (args.next().unwrap(), args.next().unwrap());
    let board = ChallengeBoard::new();
    board.add_http01(&token, &key_authorization);
    let listener = Http01Listener::bind("127.0.0.1:0".parse().unwrap(), Arc::new(board))
        .await
        .unwrap();
    println!("listening on {}", listener.local_addr());
    std::io::stdout().flush().unwrap();
    // Until the test closes our standard input.
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        while std::io::stdin().lock().read_line(&mut line).unwrap_or(0) > 0 {
            line.clear();
        }
    })
    .await
    .unwrap();
    listener.stop().await;
}
