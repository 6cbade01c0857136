//! Fills an audit directory with N synthetic records (realistic fields, hashes chained), for
//! bench/audit.py's lookup timing. Usage: audit_fill <dir> <records>

use inferd_runtime::audit::AuditSettings;
use inferd_runtime::audit::segment::Writer;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: audit_fill <dir> <records>")?;
    let n: u64 = args
        .next()
        .ok_or("usage: audit_fill <dir> <records>")?
        .parse()
        .map_err(|e| format!("{e}"))?;
    let mut writer = Writer::open(&AuditSettings::new(&dir))?;
    for i in 0..n {
        let body = format!(
            r#""id":"req-{i:010}","received_at":"2026-12-01T10:{:02}:{:02}.{:06}Z","completed_at":"2026-12-01T10:{:02}:{:02}.{:06}Z","model_name":"fraud_{}","model_version":"{}","route":"latest","principal":"ci","protocol":"grpc","status":{{"code":"OK"}},"latency_us":{},"input_sha256":"{:064x}","output_sha256":"{:064x}""#,
            (i / 60_000_000) % 60,
            (i / 1_000_000) % 60,
            i % 1_000_000,
            (i / 60_000_000) % 60,
            (i / 1_000_000) % 60,
            i % 1_000_000,
            i % 7,
            1 + i % 3,
            100 + i % 900,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        );
        writer.append(body.as_bytes()).map_err(|e| e.to_string())?;
    }
    writer.close().map_err(|e| e.to_string())?;
    Ok(())
}
