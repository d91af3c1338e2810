use std::fs;
use std::os::unix::fs::symlink;
use std::sync::mpsc::TryRecvError;

use super::*;
use crate::strategy::testing::TempDir;

const WAIT: Duration = Duration::from_secs(5);

/// A config file selecting nothing real, with one strategy per name.
fn yaml(names: &[&str]) -> String {
    let mut text = "scheduler:\n  scan_interval_ms: 250\nstrategies:\n".to_string();
    for name in names {
        text.push_str(&format!("  - {{name: {name}, pid: 1, priority: 0}}\n"));
    }
    text
}

struct Harness {
    dir: TempDir,
    watcher: ConfigWatcher,
    events: Receiver<ConfigEvent>,
    resolver: Receiver<ResolverInput>,
}

/// Starts a watcher on `file` in `dir` (which must hold a valid config).
fn start(dir: TempDir, file: &str) -> (Harness, Config) {
    let (events_tx, events) = mpsc::channel();
    let (resolver_tx, resolver) = mpsc::channel();
    let (watcher, config) = ConfigWatcher::start(
        dir.path().join(file),
        resolver_tx,
        Box::new(move |event| {
            let _ = events_tx.send(event);
        }),
    )
    .unwrap();
    let harness = Harness {
        dir,
        watcher,
        events,
        resolver,
    };
    (harness, config)
}

fn names(config: &Config) -> Vec<String> {
    config
        .strategies
        .list
        .iter()
        .map(|s| s.name.clone())
        .collect()
}

impl Harness {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn next_event(&self) -> ConfigEvent {
        self.events.recv_timeout(WAIT).expect("a config event")
    }

    /// Waits until a reload applies strategies named `want`, skipping
    /// reloads of intermediate states a non-atomic write may expose.
    fn wait_reloaded(&self, want: &[&str]) -> Config {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(ConfigEvent::Reloaded(config)) if names(&config) == want => return config,
                Ok(_) => {}
                Err(_) => panic!("no reload with strategies {want:?}"),
            }
        }
    }

    /// Checks the resolver was sent the strategies named `want` (and the
    /// scan interval) by the last reload.
    fn assert_resolver_got(&self, want: &[&str]) {
        let mut strategies = None;
        let mut interval = None;
        while let Ok(input) = self.resolver.try_recv() {
            match input {
                ResolverInput::Strategies(s) => strategies = Some(s),
                ResolverInput::ScanInterval(d) => interval = Some(d),
                other => panic!("unexpected {other:?}"),
            }
        }
        let got: Vec<String> = strategies
            .expect("strategies sent")
            .list
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(got, want);
        assert_eq!(interval, Some(Duration::from_millis(250)));
    }
}

#[test]
fn start_returns_the_loaded_config() {
    let dir = TempDir::new("watch-start");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, config) = start(dir, "cfg.yaml");
    assert_eq!(names(&config), ["a"]);
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);
}

fn start_error(path: PathBuf) -> ConfigError {
    let (tx, _rx) = mpsc::channel();
    match ConfigWatcher::start(path, tx, Box::new(|_| {})) {
        Ok(_) => panic!("started"),
        Err(e) => e,
    }
}

#[test]
fn start_rejects_an_invalid_or_missing_file() {
    let dir = TempDir::new("watch-start-invalid");
    let path = dir.path().join("cfg.yaml");
    fs::write(&path, "strategies:\n  - {name: a, pid: 1, priority: 9}\n").unwrap();
    assert_eq!(start_error(path.clone()).location, Some((2, 33)));
    fs::remove_file(&path).unwrap();
    let err = start_error(path);
    assert!(err.message.starts_with("cannot read: "), "{err}");
    let err = start_error(dir.path().join("no/cfg.yaml"));
    assert!(err.message.starts_with("cannot watch "), "{err}");
}

#[test]
fn in_place_write_reloads() {
    let dir = TempDir::new("watch-in-place");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    fs::write(h.path("cfg.yaml"), yaml(&["a", "b"])).unwrap();
    h.wait_reloaded(&["a", "b"]);
    h.assert_resolver_got(&["a", "b"]);
}

#[test]
fn editor_temp_file_rename_reloads() {
    let dir = TempDir::new("watch-rename");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    fs::write(h.path(".cfg.yaml.swp"), yaml(&["b"])).unwrap();
    fs::rename(h.path(".cfg.yaml.swp"), h.path("cfg.yaml")).unwrap();
    h.wait_reloaded(&["b"]);
    h.assert_resolver_got(&["b"]);
}

#[test]
fn delete_and_recreate_reloads() {
    let dir = TempDir::new("watch-recreate");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    fs::remove_file(h.path("cfg.yaml")).unwrap();
    match h.next_event() {
        ConfigEvent::Rejected(e) => assert!(e.message.starts_with("cannot read: "), "{e}"),
        ConfigEvent::Reloaded(c) => panic!("reloaded {:?}", names(&c)),
    }
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);
    fs::write(h.path("cfg.yaml"), yaml(&["c"])).unwrap();
    h.wait_reloaded(&["c"]);
    h.assert_resolver_got(&["c"]);
}

#[test]
fn configmap_data_symlink_swap_reloads() {
    // The layout kubelet gives a ConfigMap volume.
    let dir = TempDir::new("watch-configmap");
    let root = dir.path();
    fs::create_dir(root.join("..2026_12_04_10_00_00.1")).unwrap();
    fs::write(root.join("..2026_12_04_10_00_00.1/cfg.yaml"), yaml(&["v1"])).unwrap();
    symlink("..2026_12_04_10_00_00.1", root.join("..data")).unwrap();
    symlink("..data/cfg.yaml", root.join("cfg.yaml")).unwrap();
    let (h, config) = start(dir, "cfg.yaml");
    assert_eq!(names(&config), ["v1"]);

    for (version, name) in [(2, "v2"), (3, "v3")] {
        let stamp = format!("..2026_12_04_10_00_00.{version}");
        let old = fs::read_link(h.path("..data")).unwrap();
        fs::create_dir(h.path(&stamp)).unwrap();
        fs::write(h.path(&stamp).join("cfg.yaml"), yaml(&[name])).unwrap();
        symlink(&stamp, h.path("..data_tmp")).unwrap();
        fs::rename(h.path("..data_tmp"), h.path("..data")).unwrap();
        fs::remove_dir_all(h.path(old.to_str().unwrap())).unwrap();
        h.wait_reloaded(&[name]);
        h.assert_resolver_got(&[name]);
    }
}

#[test]
fn symlink_target_in_another_directory_is_watched() {
    let dir = TempDir::new("watch-symlink");
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::create_dir(dir.path().join("store")).unwrap();
    fs::write(dir.path().join("store/real.yaml"), yaml(&["a"])).unwrap();
    symlink(
        dir.path().join("store/real.yaml"),
        dir.path().join("etc/cfg.yaml"),
    )
    .unwrap();
    let (h, _) = start(dir, "etc/cfg.yaml");
    fs::write(h.path("store/real.yaml"), yaml(&["b"])).unwrap();
    h.wait_reloaded(&["b"]);
}

#[test]
fn broken_file_keeps_last_good_config() {
    let dir = TempDir::new("watch-broken");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["good"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    let replace = |content: &str| {
        fs::write(h.path("cfg.yaml.new"), content).unwrap();
        fs::rename(h.path("cfg.yaml.new"), h.path("cfg.yaml")).unwrap();
    };

    replace("strategies:\n  - {name: bad, pid: 1, priority: 9}\n");
    match h.next_event() {
        ConfigEvent::Rejected(e) => {
            assert_eq!(e.location, Some((2, 35)));
            assert!(e.message.starts_with("strategies[0].priority: "), "{e}");
        }
        ConfigEvent::Reloaded(c) => panic!("reloaded {:?}", names(&c)),
    }
    // Nothing reached the resolver: the last good strategies stay.
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);

    replace("strategies: [unclosed\n");
    assert!(matches!(h.next_event(), ConfigEvent::Rejected(_)));
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);

    replace(&yaml(&["fixed"]));
    h.wait_reloaded(&["fixed"]);
    h.assert_resolver_got(&["fixed"]);
}

#[test]
fn rewriting_identical_content_is_not_reapplied() {
    let dir = TempDir::new("watch-identical");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    fs::write(h.path("cfg.yaml"), yaml(&["a"])).unwrap();
    fs::write(h.path("cfg.yaml.new"), "strategies: 1\n").unwrap();
    fs::rename(h.path("cfg.yaml.new"), h.path("cfg.yaml")).unwrap();
    // The identical rewrite produced no event: the next one is the change.
    assert!(matches!(h.next_event(), ConfigEvent::Rejected(_)));
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);
}

#[test]
fn reload_rereads_an_unchanged_file() {
    let dir = TempDir::new("watch-sighup");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["a"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    h.watcher.reload();
    h.wait_reloaded(&["a"]);
    h.assert_resolver_got(&["a"]);
}

/// The wiring main does: watcher and resolver share the input channel, so
/// an edit of the file changes the rule table the loop receives.
#[test]
fn config_edit_reaches_the_rule_table() {
    use crate::strategy::resolver;
    use crate::strategy::testing::FakeProc;

    let proc = FakeProc::new();
    proc.add_process(10, "demo", "/");
    proc.add_process(20, "other", "/");
    let dir = TempDir::new("watch-wiring");
    let path = dir.path().join("cfg.yaml");
    fs::write(
        &path,
        "strategies: [{name: s, command_regex: ^demo, priority: 0}]\n",
    )
    .unwrap();

    let (input, inputs) = mpsc::channel();
    let (watcher, config) = ConfigWatcher::start(path.clone(), input, Box::new(|_| {})).unwrap();
    let (rules, tables) = mpsc::channel();
    let _resolver = resolver::spawn(
        proc.root().to_path_buf(),
        config.strategies,
        Duration::from_millis(config.scheduler.scan_interval_ms),
        inputs,
        rules,
        Box::new(|| {}),
    )
    .unwrap();
    let keys = |table: crate::strategy::RuleTable| -> Vec<i32> {
        table.rules.iter().map(|(k, _)| *k).collect()
    };
    assert_eq!(keys(tables.recv_timeout(WAIT).unwrap()), [10]);

    fs::write(
        &path,
        "strategies: [{name: s, command_regex: ^other, priority: 0}]\n",
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    while keys(tables.recv_timeout(WAIT).unwrap()) != [20] {
        assert!(
            Instant::now() < deadline,
            "no rule table for the edited file"
        );
    }
    drop(watcher);
}

#[test]
fn every_malformed_config_is_rejected_and_changes_nothing() {
    let dir = TempDir::new("watch-catalogue");
    fs::write(dir.path().join("cfg.yaml"), yaml(&["good"])).unwrap();
    let (h, _) = start(dir, "cfg.yaml");
    for (content, _) in crate::config::bad_input_tests::CATALOGUE {
        fs::write(h.path("cfg.yaml.new"), content).unwrap();
        fs::rename(h.path("cfg.yaml.new"), h.path("cfg.yaml")).unwrap();
        match h.next_event() {
            ConfigEvent::Rejected(e) => assert!(!e.to_string().contains('\n'), "{e}"),
            ConfigEvent::Reloaded(c) => panic!("{content:?} reloaded {:?}", names(&c)),
        }
        assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);
    }
    // A directory where the file was: refused too, and the last good config stays.
    fs::remove_file(h.path("cfg.yaml")).unwrap();
    fs::create_dir(h.path("cfg.yaml")).unwrap();
    loop {
        match h.next_event() {
            ConfigEvent::Rejected(e) if e.message.contains("is a directory") => break,
            ConfigEvent::Rejected(_) => {}
            ConfigEvent::Reloaded(c) => panic!("a directory reloaded {:?}", names(&c)),
        }
    }
    assert_eq!(h.resolver.try_recv().unwrap_err(), TryRecvError::Empty);
}
