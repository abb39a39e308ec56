//! Starts a sandbox, runs code in it and prints its metrics.

use std::time::Duration;

#[tokio::main]
async fn main() -> msb_sdk::Result<()> {
    let client = msb_sdk::Client::new();
    let mut sandbox = client.sandbox("").memory_mib(256).start().await?;
    let output = sandbox
        .exec([
            "sh",
            "-c",
            "echo hello from $(hostname); seq 1 100000 | wc -l",
        ])
        .await?;
    print!("{}", output.stdout_text());
    for _ in 0..50 {
        match sandbox.metrics().await {
            Ok(report) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("serialises")
                );
                break;
            }
            Err(msb_sdk::Error::MetricsUnavailable(_)) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e),
        }
    }
    sandbox.stop(None).await
}
