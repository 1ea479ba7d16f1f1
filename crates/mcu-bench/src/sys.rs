//! Process CPU and memory from `/proc` (Linux).

/// User + system CPU seconds used so far by `pid` (`None`: this process).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/stat".to_owned(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may contain spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture the project builds for.
    100.0
}

/// CPU seconds used so far by the whole machine (every process, all cores).
pub fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(line) = stat.lines().next() else { return 0.0 };
    // cpu user nice system idle iowait irq softirq steal ...
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum::<f64>();
    busy / clock_ticks()
}

/// Resident set size of `pid` in MiB (`None`: this process).
pub fn rss_mib(pid: Option<u32>) -> Option<f64> {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |p| format!("/proc/{p}/status"));
    let status = std::fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Measures CPU use of several processes over a wall-clock window.
pub struct CpuWindow {
    start: std::time::Instant,
    machine: f64,
    pids: Vec<Option<u32>>,
    cpu: Vec<f64>,
}

impl CpuWindow {
    /// Starts measuring `pids` (`None`: this process).
    pub fn start(pids: &[Option<u32>]) -> Self {
        Self {
            start: std::time::Instant::now(),
            machine: machine_busy_seconds(),
            pids: pids.to_vec(),
            cpu: pids.iter().map(|&p| cpu_seconds(p).unwrap_or(0.0)).collect(),
        }
    }

    /// Cores busy on the whole machine since `start` (every process).
    pub fn machine(&self) -> f64 {
        (machine_busy_seconds() - self.machine) / self.start.elapsed().as_secs_f64().max(1e-9)
    }

    /// CPU seconds per wall second of each process since `start`, and the wall time.
    pub fn stop(&self) -> (Vec<f64>, f64) {
        let wall = self.start.elapsed().as_secs_f64();
        let used = self
            .pids
            .iter()
            .zip(&self.cpu)
            .map(|(&p, &c0)| (cpu_seconds(p).unwrap_or(c0) - c0) / wall.max(1e-9))
            .collect();
        (used, wall)
    }
}

/// The `p`th percentile (0..=100) of `values` (nearest rank); `NaN` when empty.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// UDP datagrams the kernel dropped because a socket's receive buffer was full, on
/// the whole machine since boot (`RcvbufErrors` of `/proc/net/snmp`): on loopback the
/// only way a packet is lost before a process reads it.
pub fn udp_receive_buffer_drops() -> u64 {
    let Ok(snmp) = std::fs::read_to_string("/proc/net/snmp") else { return 0 };
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else { return 0 };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_rss() {
        assert!(cpu_seconds(None).is_some());
        assert!(rss_mib(None).is_some_and(|r| r > 0.0));
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
