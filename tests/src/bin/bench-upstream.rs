//! The benchmark upstream: `bench-upstream ADDR` serves [`ward_e2e::upstream::Upstream`]
//! without request logging (`GET /small` answers `ok`). Single-threaded, to be pinned.

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18080".into());
    let addr = addr.parse().unwrap_or_else(|e| panic!("{addr:?} is not an address: {e}"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(async move {
        let up = ward_e2e::upstream::Upstream::bind(addr, false).await;
        eprintln!("bench-upstream listening on {}", up.addr);
        std::future::pending::<()>().await;
    });
}
