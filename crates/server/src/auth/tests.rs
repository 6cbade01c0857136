use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A key file in the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "inferd-auth-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const CI: &str = "ik.ci.c2VjcmV0LWZvci1jaQ";
const OPS: &str = "ik.ops.b3BzLXNlY3JldA";

fn key_file(entries: &[(&str, &str, &str)]) -> TempFile {
    let mut text = String::new();
    for (id, secret, scopes) in entries {
        text += &format!(
            "[[keys]]\nid = \"{id}\"\nsha256 = \"{}\"\nscopes = [{scopes}]\n",
            keys::secret_sha256(secret)
        );
    }
    text +=
        "[[subjects]]\nsubject = \"CN=batch,O=acme\"\nid = \"batch\"\nscopes = [\"inference\"]\n";
    TempFile::new(&text)
}

fn auth(path: &Path, public: &[Group]) -> Auth {
    let settings = AuthSettings {
        keys_file: Some(path.to_path_buf()),
        jwt: None,
        public: public.iter().copied().collect::<BTreeSet<_>>(),
    };
    Auth::new(settings, &prometheus::Registry::new()).unwrap()
}

fn need(group: Group, model: Option<&str>) -> Need {
    Need {
        group: Some(group),
        model: model.map(str::to_string),
    }
}

fn bearer(secret: &str) -> String {
    format!("Bearer {secret}")
}

#[tokio::test]
async fn scopes_decide_and_public_groups_need_nothing() {
    let f = key_file(&[
        ("ci", CI, "\"inference:iris*\", \"metadata:iris*\""),
        ("ops", OPS, "\"admin\""),
    ]);
    let a = auth(f.path(), &[Group::Health]);
    let ci = bearer(CI);

    // Public: no credentials, or even bad ones.
    assert!(
        a.admit(&need(Group::Health, None), None, None)
            .await
            .is_ok()
    );
    assert!(
        a.admit(&need(Group::Health, None), Some("Basic x"), None)
            .await
            .is_ok()
    );

    // Missing, malformed, wrong.
    for header in [None, Some("Basic abc"), Some("Bearer ik.ci.wrong")] {
        let err = a
            .admit(&need(Group::Metadata, Some("iris_logreg")), header, None)
            .await
            .unwrap_err();
        assert!(matches!(err, Denied::Unauthenticated(_)), "{err:?}");
    }

    // In scope, out of scope (by model, by group).
    let ok = a
        .admit(&need(Group::Metadata, Some("iris_logreg")), Some(&ci), None)
        .await
        .unwrap();
    assert_eq!(ok.principal.as_ref().unwrap().id, "ci");
    let err = a
        .admit(&need(Group::Metadata, Some("mlp")), Some(&ci), None)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        Denied::Forbidden {
            principal: "ci".into(),
            scope: "metadata:mlp".into()
        }
    );
    for g in [Group::ModelRepository, Group::Logging, Group::Traffic] {
        let err = a.admit(&need(g, None), Some(&ci), None).await.unwrap_err();
        assert!(err.to_string().contains(g.as_str()), "{err}");
    }

    // Inference is admitted on any inference scope; the router checks the model.
    let access = a
        .admit(&need(Group::Inference, Some("mlp")), Some(&ci), None)
        .await
        .unwrap();
    let mut ctx = RequestContext::new(inferd_runtime::Protocol::Http);
    access.apply(&mut ctx);
    assert_eq!(ctx.principal, "ci");
    let grant = ctx.grant.unwrap();
    assert!(grant.allows("iris_logreg") && !grant.allows("mlp"));

    // Admin has every group.
    for g in Group::ALL {
        assert!(
            a.admit(&need(g, None), Some(&bearer(OPS)), None)
                .await
                .is_ok()
        );
    }
}

#[tokio::test]
async fn client_certificate_subjects_are_principals() {
    let f = key_file(&[("ci", CI, "\"metadata\"")]);
    let a = auth(f.path(), &[]);
    let peer = PeerInfo {
        remote: None,
        subject: Some("CN=batch,O=acme".into()),
    };
    let ok = a
        .admit(&need(Group::Inference, Some("mlp")), None, Some(&peer))
        .await
        .unwrap();
    assert_eq!(ok.principal.unwrap().id, "batch");
    let stranger = PeerInfo {
        remote: None,
        subject: Some("CN=other".into()),
    };
    assert!(
        a.admit(&need(Group::Inference, None), None, Some(&stranger))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn rates_are_per_principal_and_counted() {
    let f = TempFile::new(&format!(
        "[[keys]]\nid = \"ci\"\nsha256 = \"{}\"\nscopes = [\"metadata\"]\nrate = 1\nburst = 2\n",
        keys::secret_sha256(CI)
    ));
    let registry = prometheus::Registry::new();
    let settings = AuthSettings {
        keys_file: Some(f.path().to_path_buf()),
        jwt: None,
        public: BTreeSet::new(),
    };
    let a = Auth::new(settings, &registry).unwrap();
    let ci = bearer(CI);
    let n = need(Group::Metadata, None);
    assert!(a.admit(&n, Some(&ci), None).await.is_ok());
    assert!(a.admit(&n, Some(&ci), None).await.is_ok());
    let err = a.admit(&n, Some(&ci), None).await.unwrap_err();
    assert!(err.retry_after_secs().is_some_and(|s| s >= 1), "{err:?}");
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("inferd_auth_denied_total{principal=\"ci\",reason=\"rate_limited\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn messages_never_carry_the_secret() {
    let f = key_file(&[("ci", CI, "\"metadata\"")]);
    let a = auth(f.path(), &[]);
    let wrong = "ik.ci.c2VjcmV0LWZvci1jaQX";
    let err = a
        .admit(&need(Group::Metadata, None), Some(&bearer(wrong)), None)
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("c2VjcmV0"), "{err}");
    let err = a
        .admit(
            &need(Group::Metadata, None),
            Some("Bearer eyJhbGciOi.x.y"),
            None,
        )
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("eyJ"), "{err}");
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("BEARER  abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer "), None);
}
