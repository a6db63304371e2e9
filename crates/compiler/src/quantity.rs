//! Kubernetes quantities (`500m`, `2Gi`) as task resources name them.

/// Parses a Kubernetes quantity into an integer of base units (`scale` = units per 1),
/// rounded up.
pub fn quantity(s: &str, scale: f64) -> Option<u64> {
    let s = s.trim();
    let suffixes: [(&str, f64); 12] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024f64.powi(4)),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
        ("u", 1e-6),
        ("n", 1e-9),
    ];
    let (num, mult) = suffixes
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s, 1.0));
    let v: f64 = num.parse().ok()?;
    if !v.is_finite() {
        return None;
    }
    Some((v * mult * scale).ceil().max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_scale_and_round_up() {
        assert_eq!(quantity("500m", 1000.0), Some(500));
        assert_eq!(quantity("2", 1000.0), Some(2000));
        assert_eq!(quantity("1Gi", 1.0), Some(1 << 30));
        assert_eq!(quantity("1.5k", 1.0), Some(1500));
        assert_eq!(quantity("lots", 1.0), None);
    }
}
