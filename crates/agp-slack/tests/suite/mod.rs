mod blocks_snapshots;
mod daemon_loop;
mod secrets;
mod slack;
