//! Nginx control lines.

use super::Cmd;

/// Where Nginx runs: the system's, or one with its own config and prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NginxPaths {
    /// `-c` main config (absolute), if not the default.
    pub conf: Option<String>,
    /// `-p` prefix (absolute), if not the default.
    pub prefix: Option<String>,
}

fn base(p: &NginxPaths) -> Cmd {
    let mut c = Cmd::new("nginx");
    if let Some(conf) = &p.conf {
        c = c.args(["-c", conf]);
    }
    if let Some(prefix) = &p.prefix {
        c = c.args(["-p", prefix]);
    }
    c
}

/// `nginx -t`: validate the configuration.
pub fn test(p: &NginxPaths) -> Cmd {
    let c = Cmd::new("nginx").arg("-t");
    let rest = base(p);
    let mut c = c;
    c.args.extend(rest.args.into_iter().skip(1));
    c.args(["-e", "stderr"])
}

/// `nginx -s reload`: a bad config keeps the old one serving.
pub fn reload(p: &NginxPaths) -> Cmd {
    let mut c = Cmd::new("nginx").args(["-s", "reload"]);
    c.args.extend(base(p).args.into_iter().skip(1));
    c
}

/// Validate, then reload only if valid.
pub fn test_and_reload(p: &NginxPaths) -> Cmd {
    test(p).and(reload(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let sys = NginxPaths::default();
        assert_eq!(test(&sys).to_shell(), "nginx -t -e stderr");
        assert_eq!(reload(&sys).to_shell(), "nginx -s reload");
        let own = NginxPaths {
            conf: Some("/srv/my nginx/nginx.conf".into()),
            prefix: Some("/srv/my nginx/".into()),
        };
        assert_eq!(
            test_and_reload(&own).to_shell(),
            "nginx -t -c '/srv/my nginx/nginx.conf' -p '/srv/my nginx/' -e stderr \
             && nginx -s reload -c '/srv/my nginx/nginx.conf' -p '/srv/my nginx/'"
        );
    }
}
