//! The plan: the diff of desired against actual resources (see [`crate::resource`]), the
//! stale-plan check and the readable rendering.
//!
//! A [`Resource`] is one thing in AWS the stack owns, named by kind and a logical name (stable
//! across applies, stored in the `fullslack:resource` tag) and described by the attributes that
//! decide whether it matches the stack. A [`Plan`] records, per change, the resource as it was
//! when the plan was made (`before`) and as the stack wants it (`after`), so that `apply` can
//! refuse a plan that reality has moved away from, and needs no stack file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cost::CostEstimate;
use crate::resource::{Carry, Kind, Resource, Value};
use crate::spec::Lookup;

/// Plan file format version.
pub const PLAN_FORMAT: u32 = 1;

/// What a change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place.
    Update,
    /// Make a new one, then remove the old one.
    Replace,
    /// Remove it.
    Delete,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// What happens.
    pub action: Action,
    /// The resource as it is (None for a create).
    pub before: Option<Resource>,
    /// The resource as the stack wants it (None for a delete).
    pub after: Option<Resource>,
    /// Attributes that differ (update/replace).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// Changed attributes that force the replacement, and why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forces: BTreeMap<String, String>,
}

impl Change {
    /// The resource this change is about.
    pub fn resource(&self) -> &Resource {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .expect("a change has a before or an after")
    }
}

/// A resource that already matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unchanged {
    /// Kind.
    pub kind: Kind,
    /// Logical name.
    pub name: String,
    /// AWS id.
    pub id: Option<String>,
    /// Attributes as read when planning (apply refuses if they changed since).
    #[serde(default)]
    pub attrs: BTreeMap<String, Value>,
}

/// A saved plan (`--out PLAN`): JSON, no secret values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// Stack name (the `fullslack:stack` tag).
    pub stack: String,
    /// `ec2` or `ecs`.
    pub target: String,
    /// Region.
    pub region: String,
    /// `true` for a destroy plan.
    #[serde(default)]
    pub destroy: bool,
    /// Steps, in the order they run.
    pub changes: Vec<Change>,
    /// Resources that already match.
    pub unchanged: Vec<Unchanged>,
    /// What the stack costs per month once applied (an estimate).
    pub cost: CostEstimate,
    /// Seconds to wait for instances/services to become ready.
    pub wait_timeout_secs: u64,
    /// Names needed to read the stack back.
    #[serde(default)]
    pub lookup: Lookup,
    /// Things the reader should know that are not changes (no SSH ingress, a shared cluster
    /// used but not managed, a certificate checked by shape only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (create, update, replace, delete) counts.
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (
            n(Action::Create),
            n(Action::Update),
            n(Action::Replace),
            n(Action::Delete),
        )
    }

    /// The plan as people read it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let (c, u, r, d) = self.counts();
        let verb = if self.destroy { "Destroy plan" } else { "Plan" };
        let _ = writeln!(
            out,
            "{verb} for stack `{}` ({}, {}): {c} to create, {u} to update, {r} to replace, {d} to delete, {} unchanged.",
            self.stack,
            self.target,
            self.region,
            self.unchanged.len()
        );
        if self.changes.is_empty() {
            let _ = writeln!(out, "\nNo changes: AWS matches the stack.");
        } else {
            out.push('\n');
        }
        for ch in &self.changes {
            render_change(&mut out, ch);
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                let _ = writeln!(out, "Note: {n}");
            }
        }
        out.push('\n');
        out.push_str(&self.cost.render());
        out
    }
}

fn render_change(out: &mut String, ch: &Change) {
    let (sym, res) = match ch.action {
        Action::Create => ("  +", ch.after.as_ref()),
        Action::Update => ("  ~", ch.after.as_ref()),
        Action::Replace => ("-/+", ch.after.as_ref()),
        Action::Delete => ("  -", ch.before.as_ref()),
    };
    let Some(res) = res else { return };
    let label = match (&ch.before, ch.action) {
        (Some(b), _) => b.label(),
        (None, _) => res.label(),
    };
    let why = match ch.action {
        Action::Create => "create",
        Action::Update => "update in place",
        Action::Replace => "replace",
        Action::Delete => "delete",
    };
    let _ = writeln!(out, "{sym} {label}: {why}");
    match ch.action {
        Action::Create => {
            for (k, v) in &res.attrs {
                let _ = writeln!(out, "        {k} = {}", v.render());
            }
        }
        Action::Update | Action::Replace => render_changed_attrs(out, ch, res),
        Action::Delete => {}
    }
    match (res.kind, ch.action) {
        (Kind::Instance, Action::Replace) => {
            let _ = writeln!(
                out,
                "        DATA LOSS: the old instance and its root volume are deleted: data on it (the embedded store, uploaded files) is lost. The new instance starts first; the Elastic IP moves to it before the old one is terminated."
            );
        }
        (Kind::TargetGroup, Action::Replace) => {
            let _ = writeln!(
                out,
                "        create before destroy: the new target group is created first (under another name), the listeners and the ECS service move to it, and the old one is deleted once the service is stable"
            );
        }
        (Kind::Instance, Action::Update) if ch.changed.iter().any(|k| k == "instance_type") => {
            let _ = writeln!(
                out,
                "        resized in place: the instance is stopped, changed and started again (minutes of downtime); its volume, data and Elastic IP stay"
            );
        }
        _ => {}
    }
}

/// The changed attributes of an update or replacement: old → new, or a set's removed and
/// added members; each with the reason when it forces the replacement.
fn render_changed_attrs(out: &mut String, ch: &Change, res: &Resource) {
    let forced = |k: &str| match ch.forces.get(k) {
        Some(why) => format!("   (forces replacement: {why})"),
        None => String::new(),
    };
    let before = ch.before.as_ref();
    for k in &ch.changed {
        let old = before.and_then(|b| b.attrs.get(k));
        let new = res.attrs.get(k);
        match (old, new) {
            (Some(Value::Set(o)), Some(Value::Set(n))) => {
                for gone in o.iter().filter(|x| !n.contains(x)) {
                    let _ = writeln!(out, "        {k}: - {gone}   (not in the stack: drift)");
                }
                for added in n.iter().filter(|x| !o.contains(x)) {
                    let _ = writeln!(out, "        {k}: + {added}");
                }
                if ch.forces.contains_key(k) {
                    let _ = writeln!(out, "        {k}:{}", forced(k));
                }
            }
            (Some(o), Some(n)) if o == n => {
                // Same value, new target (e.g. an Elastic IP following a new instance).
                let _ = writeln!(
                    out,
                    "        {k}: {} (again: it is being replaced)",
                    n.render()
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "        {k}: {} → {}{}",
                    old.map(Value::render).unwrap_or_else(|| "(none)".into()),
                    new.map(Value::render).unwrap_or_else(|| "(none)".into()),
                    forced(k)
                );
            }
        }
    }
}

/// Diffs desired resources against actual ones. Attributes the API did not report for the
/// actual resource are not compared (an emulator may not store every setting). Changes come out in run order: creates,
/// updates and replaces in kind order, then deletes in reverse kind order.
pub fn diff(desired: &[Resource], actual: &[Resource]) -> (Vec<Change>, Vec<Unchanged>) {
    let mut changes = Vec::new();
    let mut unchanged = Vec::new();
    let mut matched = vec![false; actual.len()];
    for d in desired {
        let found = actual
            .iter()
            .enumerate()
            .find(|(i, a)| !matched[*i] && a.kind == d.kind && a.name == d.name);
        match found {
            None => changes.push(Change {
                action: Action::Create,
                before: None,
                after: Some(d.clone()),
                changed: Vec::new(),
                forces: BTreeMap::new(),
            }),
            Some((i, a)) => {
                matched[i] = true;
                let changed: Vec<String> = d
                    .attrs
                    .iter()
                    // An attribute the API did not report (absent from `a`) is not compared.
                    .filter(|(k, v)| a.attrs.get(*k).is_some_and(|have| have != *v))
                    .map(|(k, _)| k.clone())
                    .collect();
                if changed.is_empty() {
                    unchanged.push(Unchanged {
                        kind: a.kind,
                        name: a.name.clone(),
                        id: a.id.clone(),
                        attrs: a.attrs.clone(),
                    });
                } else {
                    let forces: BTreeMap<String, String> = changed
                        .iter()
                        .filter_map(|k| match d.kind.carry(k, a.attrs.get(k), &d.attrs[k]) {
                            Carry::Replace(why) => Some((k.clone(), why)),
                            Carry::InPlace => None,
                        })
                        .collect();
                    let replace = !forces.is_empty();
                    let mut after = d.clone();
                    after.id = a.id.clone();
                    changes.push(Change {
                        action: if replace {
                            Action::Replace
                        } else {
                            Action::Update
                        },
                        before: Some(a.clone()),
                        after: Some(after),
                        changed,
                        forces,
                    });
                }
            }
        }
    }
    let mut deletes: Vec<Change> = actual
        .iter()
        .zip(&matched)
        .filter(|(_, m)| !**m)
        .map(|(a, _)| Change {
            action: Action::Delete,
            before: Some(a.clone()),
            after: None,
            changed: Vec::new(),
            forces: BTreeMap::new(),
        })
        .collect();
    changes.append(&mut deletes);
    order(&mut changes);
    (changes, unchanged)
}

/// Run order: creates, updates and replaces by kind (dependencies first), then deletes in
/// reverse kind order (dependents first). Stable within a kind.
pub fn order(changes: &mut [Change]) {
    // A security group that another group's rule names cannot be deleted before that
    // group: groups whose rules name one of the stack's groups go first.
    let names_a_group = |c: &Change| {
        c.resource()
            .list("ingress")
            .iter()
            .any(|r| r.contains(" from group:"))
    };
    changes.sort_by_key(|c| match c.action {
        Action::Delete => (1u8, u8::MAX - c.resource().kind as u8, !names_a_group(c)),
        _ => (0u8, c.resource().kind as u8, false),
    });
}

/// Checks that reality still is what the plan saw: every change's `before` must equal the
/// resource read now (absent for creates), and unchanged resources must still exist with the
/// same id. Returns the first difference.
pub fn check_current(plan: &Plan, actual: &[Resource]) -> Result<(), String> {
    fn find<'a>(
        actual: &'a [Resource],
        kind: Kind,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Resource> + 'a {
        actual
            .iter()
            .filter(move |a| a.kind == kind && a.name == name)
    }
    for ch in &plan.changes {
        let r = ch.resource();
        match &ch.before {
            None => {
                if let Some(now) = find(actual, r.kind, &r.name).next() {
                    return Err(format!(
                        "{} was created since the plan was made",
                        now.label()
                    ));
                }
            }
            Some(before) => {
                let same = find(actual, r.kind, &r.name)
                    .any(|now| now.id == before.id && now.attrs == before.attrs);
                if !same {
                    return Err(format!(
                        "{} changed or disappeared since the plan was made",
                        before.label()
                    ));
                }
            }
        }
    }
    for u in &plan.unchanged {
        if !find(actual, u.kind, &u.name).any(|now| now.id == u.id && now.attrs == u.attrs) {
            return Err(format!(
                "{} {} changed or disappeared since the plan was made",
                u.kind.as_str(),
                u.name
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sg(rules: &[&str]) -> Resource {
        Resource::new(Kind::SecurityGroup, "web").attr("ingress", Value::set(rules.iter().copied()))
    }

    #[test]
    fn create_update_replace_delete_and_noop() {
        let desired = vec![
            sg(&["tcp/80 from 0.0.0.0/0"]),
            Resource::new(Kind::Instance, "web-1").attr("instance_type", "t3.small"),
        ];
        let (ch, un) = diff(&desired, &[]);
        assert_eq!(ch.len(), 2);
        assert!(ch.iter().all(|c| c.action == Action::Create));
        assert!(un.is_empty());

        let mut actual_sg = sg(&["tcp/80 from 0.0.0.0/0", "tcp/3306 from 0.0.0.0/0"]);
        actual_sg.id = Some("sg-1".into());
        let mut actual_i = Resource::new(Kind::Instance, "web-1").attr("instance_type", "t3.micro");
        actual_i.id = Some("i-1".into());
        let stray = Resource::new(Kind::Instance, "web-2").attr("instance_type", "t3.small");
        let actual = vec![actual_i, stray, actual_sg];
        let (ch, un) = diff(&desired, &actual);
        let acts: Vec<_> = ch
            .iter()
            .map(|c| (c.action, c.resource().name.clone()))
            .collect();
        assert_eq!(
            acts,
            vec![
                (Action::Update, "web".to_string()),
                // Same CPU architecture: resized in place.
                (Action::Update, "web-1".to_string()),
                (Action::Delete, "web-2".to_string()),
            ]
        );
        // What forces a replacement says why; what does not, apply does in place.
        let one = |s: &str| Value::One(s.into());
        assert!(matches!(
            Kind::Instance.carry("image", Some(&one("al2023")), &one("debian")),
            Carry::Replace(why) if why.contains("only at launch")
        ));
        assert!(matches!(
            Kind::Instance.carry("instance_type", Some(&one("t3.small")), &one("t4g.small")),
            Carry::Replace(why) if why.contains("architectures")
        ));
        assert!(matches!(
            Kind::Instance.carry("volume_gb", Some(&one("30")), &one("20")),
            Carry::Replace(_)
        ));
        assert_eq!(
            Kind::Instance.carry("volume_gb", Some(&one("20")), &one("30")),
            Carry::InPlace
        );
        assert!(matches!(
            Kind::EcsCluster.carry("anything", None, &one("x")),
            Carry::Replace(_)
        ));
        assert!(un.is_empty());
        assert_eq!(ch[0].after.as_ref().unwrap().id.as_deref(), Some("sg-1"));

        let (ch, un) = diff(&desired, &desired);
        assert!(ch.is_empty());
        assert_eq!(un.len(), 2);
    }

    #[test]
    fn stale_plan_is_detected() {
        let desired = vec![sg(&["tcp/80 from 0.0.0.0/0"])];
        let (changes, unchanged) = diff(&desired, &[]);
        let plan = Plan {
            format: PLAN_FORMAT,
            stack: "s".into(),
            target: "ec2".into(),
            region: "us-east-1".into(),
            destroy: false,
            changes,
            unchanged,
            cost: CostEstimate::default(),
            wait_timeout_secs: 1,
            lookup: Lookup::default(),
            notes: Vec::new(),
        };
        assert!(check_current(&plan, &[]).is_ok());
        assert!(check_current(&plan, &desired).is_err());
        let text = plan.render();
        assert!(text.contains("+ security_group web: create"), "{text}");
    }
}
