//! Waiting for a live agent while watching its model connections: an agent CLI that cannot
//! reach its model retries for minutes in silence; agp stops it within seconds and says why.

use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use agp_egress::UpstreamWatch;

/// Connections to the model that may fail in a row before the run stops.
pub const MAX_MODEL_FAILURES: u32 = 3;
/// How long the model may stay unreachable (failures only) before the run stops.
pub const MAX_MODEL_OUTAGE: Duration = Duration::from_secs(8);

/// Waits for `child`; when `watch` says the model cannot be reached, kills it and returns why.
pub fn wait_watching(
    child: &mut Child,
    watch: &UpstreamWatch,
) -> std::io::Result<Result<ExitStatus, String>> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Ok(status));
        }
        if let Some(why) = watch.stop_reason(Instant::now()) {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Err(why));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
