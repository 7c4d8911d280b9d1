"""``saliq ablate``: a tiny family trained over 2 splits, resumed, tabled; the table's rules."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import yaml

torch = pytest.importorskip("torch")

from saliq.checkpoint import CONFIG_KEY, read_metadata  # noqa: E402
from saliq.errors import ConfigError  # noqa: E402
from saliq.train.ablate import (  # noqa: E402
    PLAN_NAME,
    RESULT_NAME,
    AblateOptions,
    build_plan,
    duration,
    plan_budget,
    register,
    resolve_baseline,
    run_ablation,
)
from saliq.train.ablate_table import (  # noqa: E402
    TABLE_JSON,
    TABLE_MD,
    build_table,
    compare,
    format_markdown,
    helped_text,
    summarise,
)
from saliq.train.data.distortions import DISTORTIONS  # noqa: E402

KEEP_TYPES = ("defocus_blur", "gaussian_noise")  # 11 grid images per photo instead of 56
TINY_KWARGS = {"feature_dim": 32, "hidden": [16], "frozen_prefixes": ["stem.", "stages.0."]}


def _row(name: str, cache: str, **kwargs) -> dict:
    return {
        "name": name,
        "seed": 0,
        "threads": 1,
        "num_workers": 0,
        "device": "cpu",
        "model": {
            "architecture": "sgdnet",
            "backbone": "efficientnet_lite0",
            "pretrained": True,  # ImageNet Lite0 (a package): random weights score all alike
            "input_height": 64,
            "input_width": 64,
            "kwargs": {**TINY_KWARGS, **kwargs},
        },
        "data": {
            "source": "synthetic",
            "scene_dir": None,
            "sample_photos": True,
            "cache_dir": cache,
            "val_fraction": 0.25,
            "test_fraction": 0.25,
            "copies_per_photo": 2,
            "val_photos": 1,
            "exclude_types": sorted(set(DISTORTIONS) - set(KEEP_TYPES)),
        },
        "optim": {"epochs": 7, "batch_size": 4, "warmup_steps": 1},
    }


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """configs/tiny/: default (SE on), same (identical to default), no_se (SE off)."""
    root = tmp_path_factory.mktemp("ablate")
    folder = root / "configs" / "tiny"
    folder.mkdir(parents=True)
    cache = str(root / "samples")
    rows = {
        "default": _row("tiny-default", cache),
        "same": _row("tiny-same", cache),
        "no_se": _row("tiny-no-se", cache, use_se=False),
    }
    rows["no_se"]["data"]["copies_per_photo"] = 3  # a row's data section is not its own
    for name, raw in rows.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(raw))
    # a bare `on:` key (YAML 1.1 reads it as true), as the families' configs write it
    with (folder / "no_se.yaml").open("a") as f:
        f.write("loss:\n  - {name: l1, weight: 0.8}\n  - {name: tv, on: saliency, weight: 0.2}\n")
    return root


def _options(root, **changes) -> AblateOptions:
    base = {
        "family": "tiny",
        "configs_dir": str(root / "configs"),
        "splits": 2,
        "budget_images": 16,
        "epochs": 2,
        "val_photos": 1,
        "eval_photos": 1,
        "camera_photos": 0,
        "output_dir": str(root / "out"),
        "timing": False,
    }
    return AblateOptions(**{**base, **changes})


def test_runner_trains_every_row_resumes_and_writes_the_table(family):
    lines: list[str] = []
    summary = run_ablation(_options(family), log=lines.append)
    plan = summary["plan"]
    # same.yaml duplicates default.yaml: trained once; default shows its runs
    assert {r.name: r.same_as for r in plan.rows} == {
        "no_se": None,
        "same": None,
        "default": "same",
    }
    assert sorted(summary["trained"]) == [
        "no_se/split0",
        "no_se/split1",
        "same/split0",
        "same/split1",
    ]
    assert plan.data_overrides == {"no_se": ["copies_per_photo"]}
    assert plan.baseline == "no_se"  # no row is named baseline/none: the first row
    per_run = [line for line in lines if line.startswith("[saliq ablate] run ")]
    assert len(per_run) == 4 and all("16 images trained in" in line for line in per_run)

    # equal budget: 2 epochs x 2 steps x batch 4 for every row, as the trainer logged it
    assert plan.budget.images == 16 and plan.budget.steps_per_epoch == 2
    results = {}
    for run in plan.runs:
        result = json.loads((run.out_dir / RESULT_NAME).read_text())
        results[run.label] = result
        assert result["images_seen"] == result["planned_images"] == 16
        assert run.config.data.copies_per_photo == 2  # the family's data section everywhere
        assert run.config.optim.early_stopping_patience is None
        # evaluated only on photos its own training never saw (the recorded test split)
        split = json.loads(read_metadata(run.out_dir / "best.safetensors")[CONFIG_KEY])["split"]
        photos = result["details"]["grid"]["photos"]
        assert (
            photos and set(photos) <= set(split["test"]) and not set(photos) & set(split["train"])
        )
        assert set(result["metrics"]) >= {"grid_srcc", "grid_plcc", "grid_krcc"}
        assert result["details"]["camera"] == {"skipped": "--camera-photos 0"}
    # the splits' evaluation photos are content-disjoint
    evaluated = [{i.name for i in s.eval_items} for s in plan.splits]
    assert not evaluated[0] & evaluated[1]

    table = json.loads((plan.out_dir / TABLE_JSON).read_text())
    assert [r["name"] for r in table["rows"]] == ["no_se", "same", "default"]
    for row in table["rows"]:
        assert row["images_seen"] == [16, 16]
        assert row["metrics"]["grid_srcc"]["n"] in (0, 1, 2)
        assert row["params"] > 0 and row["gflops"] > 0
    default = table["rows"][2]
    assert default["same_as"] == "same"
    assert default["metrics"] == table["rows"][1]["metrics"]
    assert table["rows"][0]["helped_text"] == "baseline"
    markdown = (plan.out_dir / TABLE_MD).read_text()
    assert "| default (= same) |" in markdown and "grid SRCC" in markdown

    # rerun: nothing trains, the checkpoints are untouched
    stamps = {r.label: (r.out_dir / "best.safetensors").stat().st_mtime_ns for r in plan.runs}
    again = run_ablation(_options(family), log=lambda *_: None)
    assert again["trained"] == [] and len(again["skipped"]) == 4
    for run in plan.runs:
        assert (run.out_dir / "best.safetensors").stat().st_mtime_ns == stamps[run.label]

    # runs recorded before an option existed (here data.rotate_deg, at its default) still count
    for run in plan.runs:
        for name in (PLAN_NAME, RESULT_NAME):
            path = run.out_dir / name
            record = json.loads(path.read_text())
            record["train_fingerprint"] = "recorded-by-an-older-saliq"
            if name == PLAN_NAME:
                del record["config"]["data"]["rotate_deg"]
            path.write_text(json.dumps(record))
    again = run_ablation(_options(family), log=lambda *_: None)
    assert again["trained"] == [] and len(again["skipped"]) == 4

    # a changed budget in the same folder is refused, not silently mixed into the table
    with pytest.raises(ConfigError, match="another configuration"):
        run_ablation(_options(family, budget_images=32, only=["no_se"]), log=lambda *_: None)


def test_dry_run_estimates_and_trains_nothing(family, tmp_path):
    lines: list[str] = []
    options = _options(family, output_dir=str(tmp_path / "dry"), dry_run=True, timing=True)
    summary = run_ablation(options, log=lines.append)
    estimate = summary["estimate"]
    assert set(estimate["rows"]) == {"no_se", "same"}  # the alias is not timed or trained
    assert all(r["train_ips"] > 0 and r["eval_ips"] > 0 for r in estimate["rows"].values())
    assert any("estimate: 4 runs" in line and "~" in line for line in lines)
    assert estimate["total_s"] == pytest.approx(estimate["train_s"] + estimate["eval_s"])
    assert not (tmp_path / "dry").exists()


def test_budget_is_whole_steps_split_over_epochs():
    b = plan_budget(2400, 16, 2, steps_available=1000)
    assert (b.images, b.epochs, b.steps_per_epoch) == (2400, 2, 75)
    # 7 steps, but one epoch of data holds only 3: 3 epochs of 3 steps (rounded up)
    b = plan_budget(100, 16, 2, steps_available=3)
    assert (b.images, b.epochs, b.steps_per_epoch) == (144, 3, 3)
    assert plan_budget(8, 4, 5, 10).epochs == 2  # never more epochs than steps
    with pytest.raises(ConfigError, match="less than one batch"):
        plan_budget(8, 16, 2, 10)


def test_summary_spread_and_helped_rule_on_hand_made_values():
    s = summarise([0.80, 0.82, 0.84, float("nan")])  # an undefined value is left out
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.82) and s["std"] == pytest.approx(0.02)
    assert (s["min"], s["max"]) == (0.80, 0.84)
    base = {"grid_srcc": summarise([0.70, 0.71, 0.72]), "nss": summarise([1.0, 1.1, 1.2])}
    row = {
        "grid_srcc": summarise([0.72, 0.75, 0.78]),  # gain 0.04 > spread 0.03: helped
        "nss": summarise([0.95, 1.05, 1.15]),  # loss 0.05 < spread 0.1: within
    }
    verdict = compare(row, base)
    assert verdict["grid_srcc"]["verdict"] == "helped"
    assert verdict["grid_srcc"]["spread"] == pytest.approx(0.03)
    assert verdict["nss"]["verdict"] == "within"
    row["grid_srcc"] = summarise([0.71, 0.735, 0.76])  # gain 0.025 < spread 0.025: not helped
    assert compare(row, base)["grid_srcc"]["verdict"] == "within"
    row["nss"] = summarise([0.7, 0.75, 0.8])  # loss 0.35 > spread 0.1: hurt
    assert compare(row, base)["nss"]["verdict"] == "hurt"
    one = compare({"nss": summarise([1.5])}, {"nss": summarise([1.0])})
    assert one["nss"]["verdict"] == "n/a" and helped_text(one) == "n/a (one split)"
    assert helped_text(verdict) == "helped: grid SRCC +0.040"
    # a metric the baseline lacks (no saliency output) is not compared
    assert "cc" not in compare({"cc": summarise([0.5, 0.6])}, base)


def test_table_from_hand_made_runs():
    def run(split, srcc, nss=None):
        metrics = {"grid_srcc": srcc}
        if nss is not None:
            metrics["nss"] = nss
        return {"split": split, "metrics": metrics, "images_seen": 64}

    info = {"params": 2_000_000, "trainable_params": 10, "gflops": 0.5, "input_hw": [64, 64]}
    rows = [
        {"name": "base", "config": "b.yaml", "same_as": None, **info},
        {"name": "sal", "config": "s.yaml", "same_as": None, **info},
        {"name": "default", "config": "d.yaml", "same_as": "sal", **info},
        {"name": "untrained", "config": "u.yaml", "same_as": None, **info},
    ]
    results = {
        "base": [run(1, 0.71), run(0, 0.70), run(2, 0.72)],
        "sal": [run(0, 0.80, 1.2), run(1, 0.82, 1.3), run(2, 0.84, 1.4)],
    }
    table = build_table("fam", rows, results, "base", {"budget": {}, "splits": [0, 1, 2]})
    names = [r["name"] for r in table["rows"]]
    assert names == ["base", "sal", "default"]  # a row without runs is left out
    sal = table["rows"][1]
    assert sal["splits"] == [0, 1, 2] and sal["helped"] == ["grid_srcc"]
    assert sal["helped_text"] == "helped: grid SRCC +0.110"
    md = format_markdown(table)
    assert "| sal | 2.00 | 0.50 | 0.820 ± 0.020 | 1.300 ± 0.100 | helped: grid SRCC +0.110 |" in md
    assert "| base | 2.00 | 0.50 | 0.710 ± 0.010 | n/a | baseline |" in md
    assert "| default (= sal) |" in md


def test_baseline_choice_and_bad_requests(family, tmp_path):
    assert resolve_baseline(["b", "b_s", "none", "default"]) == "none"
    assert resolve_baseline(["table4_1_baseline", "table4_2"]) == "table4_1_baseline"
    assert resolve_baseline(["x", "y"]) == "x"
    assert resolve_baseline(["x", "y"], "y") == "y"
    with pytest.raises(ConfigError, match="not a row"):
        resolve_baseline(["x"], "z")
    # --only an alias trains its twin; the table still reads every row's runs
    plan = build_plan(_options(family, only=["default"]))
    assert [r.label for r in plan.runs] == ["same/split0", "same/split1"]
    assert len(plan.all_runs) == 4
    with pytest.raises(ConfigError, match="no such family"):
        build_plan(_options(family, family="nope"))
    with pytest.raises(ConfigError, match="not rows of this family"):
        build_plan(_options(family, only=["typo"]))
    with pytest.raises(ConfigError, match="--splits"):
        _options(family, splits=0)
    bad = tmp_path / "configs" / "mos"
    bad.mkdir(parents=True)
    raw = _row("mos", str(tmp_path / "s"))
    raw["data"] = {"source": "csv", "csv": {"path": "x.csv", "score_min": 0, "score_max": 1}}
    (bad / "default.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="content photos"):
        build_plan(_options(family, family="mos", configs_dir=str(tmp_path / "configs")))


def test_cli_registration_and_duration():
    parser = argparse.ArgumentParser(prog="saliq")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["ablate", "tres", "--splits", "4", "--only", "a", "b", "--no-resume"])
    assert (args.family, args.splits, args.only, args.resume) == ("tres", 4, ["a", "b"], False)
    assert args.func.__name__ == "cmd_ablate" and args.budget_images == 2400
    assert duration(9360) == "~2.6 h" and duration(720) == "~12 min" and duration(40) == "~40 s"
    assert not math.isnan(summarise([1.0, 2.0])["std"])
