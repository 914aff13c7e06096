//! The benchmark issuer: `bench-idp DIR N` serves discovery + JWKS on loopback and writes
//! into DIR: `issuer` (its URL), `token` (one token), `tokens` (N distinct tokens, one per
//! line, for cold-cache runs) and `pubkey.pem` (for HAProxy's `jwt_verify`). Then it keeps
//! serving until killed.

use std::fmt::Write as _;

use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().expect("usage: bench-idp DIR N"));
    let n: usize = args.next().and_then(|n| n.parse().ok()).expect("usage: bench-idp DIR N");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let idp = ward_e2e::issuer::TestIdp::start().await;
        let write = |name: &str, text: &str| {
            std::fs::write(dir.join(name), text).unwrap_or_else(|e| panic!("write {name}: {e}"))
        };
        write("token", &idp.mint("bench", "api", json!({})));
        let mut all = String::with_capacity(n * 400);
        for i in 0..n {
            let _ = writeln!(all, "{}", idp.mint(&format!("user-{i}"), "api", json!({})));
        }
        write("tokens", &all);
        write("pubkey.pem", &idp.public_key_pem());
        // Written last: its presence tells the script everything else is ready.
        write("issuer", &idp.issuer);
        std::future::pending::<()>().await;
    });
}
