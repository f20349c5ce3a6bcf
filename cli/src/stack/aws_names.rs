//! AWS names a stack file may use, checked offline by `stack check`: regions and EC2 instance
//! types. A typo here (`us-east-7`, `t3.smal`) would otherwise surface only half-way through
//! `apply`, as an SDK error about an endpoint that does not resolve or a launch that fails.
//!
//! The tables are AWS's published lists (regions, current and previous instance families);
//! a family AWS adds later fails `stack check` with a clear message until it is added here.

/// AWS regions (commercial, GovCloud and China), as published by AWS.
pub const REGIONS: &[&str] = &[
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ca-central-1",
    "ca-west-1",
    "cn-north-1",
    "cn-northwest-1",
    "eu-central-1",
    "eu-central-2",
    "eu-north-1",
    "eu-south-1",
    "eu-south-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "il-central-1",
    "me-central-1",
    "me-south-1",
    "mx-central-1",
    "sa-east-1",
    "us-east-1",
    "us-east-2",
    "us-gov-east-1",
    "us-gov-west-1",
    "us-west-1",
    "us-west-2",
];

/// EC2 instance families (the part before the dot).
pub const INSTANCE_FAMILIES: &[&str] = &[
    "a1", "c1", "c3", "c4", "c5", "c5a", "c5ad", "c5d", "c5n", "c6a", "c6g", "c6gd", "c6gn", "c6i",
    "c6id", "c6in", "c7a", "c7g", "c7gd", "c7gn", "c7i", "c7i-flex", "c8g", "c8gd", "c8gn", "c8i",
    "c8i-flex", "d2", "d3", "d3en", "dl1", "f1", "f2", "g4ad", "g4dn", "g5", "g5g", "g6", "g6e",
    "g6f", "gr6", "h1", "hpc6a", "hpc6id", "hpc7a", "hpc7g", "i2", "i3", "i3en", "i4g", "i4i",
    "i7i", "i7ie", "i8g", "im4gn", "inf1", "inf2", "is4gen", "m1", "m2", "m3", "m4", "m5", "m5a",
    "m5ad", "m5d", "m5dn", "m5n", "m5zn", "m6a", "m6g", "m6gd", "m6i", "m6id", "m6idn", "m6in",
    "m7a", "m7g", "m7gd", "m7i", "m7i-flex", "m8g", "m8gd", "m8i", "m8i-flex", "mac1", "mac2",
    "p2", "p3", "p3dn", "p4d", "p4de", "p5", "p5e", "p5en", "p6-b200", "r3", "r4", "r5", "r5a",
    "r5ad", "r5b", "r5d", "r5dn", "r5n", "r6a", "r6g", "r6gd", "r6i", "r6id", "r6idn", "r6in",
    "r7a", "r7g", "r7gd", "r7i", "r7iz", "r8g", "r8gd", "r8i", "r8i-flex", "t1", "t2", "t3", "t3a",
    "t4g", "trn1", "trn1n", "trn2", "u-3tb1", "u-6tb1", "u-9tb1", "u-12tb1", "u-18tb1", "u-24tb1",
    "u7i-12tb", "vt1", "x1", "x1e", "x2gd", "x2idn", "x2iedn", "x2iezn", "x8g", "z1d",
];

/// Whether `size` (the part after the dot) is a size EC2 uses: `nano` … `large`, `xlarge`,
/// `NNxlarge`, `metal`, `metal-NNxl`.
fn is_size(size: &str) -> bool {
    const NAMED: &[&str] = &[
        "nano", "micro", "small", "medium", "large", "xlarge", "metal",
    ];
    if NAMED.contains(&size) {
        return true;
    }
    if let Some(n) = size.strip_suffix("xlarge") {
        return !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) && !n.starts_with('0');
    }
    if let Some(n) = size
        .strip_prefix("metal-")
        .and_then(|r| r.strip_suffix("xl"))
    {
        return !n.is_empty() && n.chars().all(|c| c.is_ascii_digit());
    }
    false
}

/// Checks an instance type; the error says what is wrong and, for a near miss, what was meant.
pub fn check_instance_type(t: &str) -> Result<(), (String, String)> {
    let Some((family, size)) = t.split_once('.') else {
        return Err((
            format!("`{t}` is not an EC2 instance type"),
            "write FAMILY.SIZE, e.g. t3.small or m7g.large".into(),
        ));
    };
    if !INSTANCE_FAMILIES.contains(&family) {
        let hint = match super::closest_word(family, INSTANCE_FAMILIES) {
            Some(f) => format!("did you mean {f}.{size}?"),
            None => "use an EC2 instance family such as t3, t4g, m7i or c7g".into(),
        };
        return Err((format!("EC2 has no instance family `{family}`"), hint));
    }
    if !is_size(size) {
        const SIZES: &[&str] = &[
            "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "metal",
        ];
        let hint = match super::closest_word(size, SIZES) {
            Some(s) => format!("did you mean {family}.{s}?"),
            None => "sizes are nano, micro, small, medium, large, xlarge, 2xlarge, … metal".into(),
        };
        return Err((format!("`{size}` is not an EC2 instance size"), hint));
    }
    Ok(())
}

/// Checks a region name; the error names the nearest real region.
pub fn check_region(r: &str) -> Result<(), (String, String)> {
    if REGIONS.contains(&r) {
        return Ok(());
    }
    let hint = match super::closest_word(r, REGIONS) {
        Some(near) => format!("did you mean {near}?"),
        None => "write a region code such as us-east-1 or eu-west-1".into(),
    };
    Err((format!("AWS has no region `{r}`"), hint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_names_pass() {
        for t in [
            "t3.small",
            "t4g.nano",
            "m7i-flex.large",
            "c6gn.16xlarge",
            "m5.metal",
            "u-6tb1.metal",
            "r8g.metal-24xl",
        ] {
            assert_eq!(check_instance_type(t), Ok(()), "{t}");
        }
        for r in ["us-east-1", "eu-west-3", "ap-southeast-7", "us-gov-west-1"] {
            assert_eq!(check_region(r), Ok(()), "{r}");
        }
    }

    #[test]
    fn typos_are_refused_with_the_name_meant() {
        let (msg, hint) = check_instance_type("t3.smal").unwrap_err();
        assert!(msg.contains("`smal`"), "{msg}");
        assert_eq!(hint, "did you mean t3.small?");
        let (msg, hint) = check_instance_type("t9.small").unwrap_err();
        assert!(msg.contains("`t9`"), "{msg}");
        assert!(hint.starts_with("did you mean t"), "{hint}");
        assert!(check_instance_type("small").is_err());
        assert!(check_instance_type("t3.0xlarge").is_err());
        let (msg, hint) = check_region("us-east-7").unwrap_err();
        assert_eq!(msg, "AWS has no region `us-east-7`");
        assert!(hint.starts_with("did you mean us-east-"), "{hint}");
        assert!(check_region("US-EAST-1").is_err());
    }
}
