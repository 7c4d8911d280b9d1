"""MOS loaders on tiny fixtures in each release format, and the MosDataset items."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np
import pytest
import torch
from scipy.io import savemat

from saliq.errors import ConfigError, InvalidImageError
from saliq.preprocess import Preprocessor
from saliq.train.data.mos import (
    SPAQ_ANNOTATIONS,
    MosDataset,
    load_generic_csv,
    load_kadid10k,
    load_koniq10k,
    load_live_challenge,
    load_pyiqa_meta,
    load_spaq,
    normalise_score,
)
from saliq.train.data.xlsx import read_xlsx_rows

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"


def _png(path: Path, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (48, 72, 3), np.uint8))


def test_normalise_score() -> None:
    assert normalise_score(3.0, 1.0, 5.0) == 0.5
    assert normalise_score(20.0, 0.0, 100.0, higher_is_better=False) == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="range"):
        normalise_score(7.0, 1.0, 5.0)


def test_koniq10k(tmp_path: Path) -> None:
    (tmp_path / "1024x768").mkdir()
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text(
        "image_name,c1,c2,c3,c4,c5,c_total,MOS,SD,MOS_zscore\n"
        "a.jpg,0,0,5,0,0,5,3.0,0.1,50.0\nb.jpg,0,0,0,0,5,5,5.0,0.1,90.0\n"
    )
    recs = load_koniq10k(tmp_path)
    assert [r.score for r in recs] == [0.5, 1.0] and recs[0].raw == 3.0
    assert recs[0].dist == (0.0, 0.0, 1.0, 0.0, 0.0) and recs[1].dist == (0, 0, 0, 0, 1.0)
    assert recs[1].path == str(tmp_path / "1024x768" / "b.jpg")
    (tmp_path / "bad.csv").write_text("image_name,score\na.jpg,3\n")
    with pytest.raises(ConfigError, match=r"bad\.csv.*MOS"):
        load_koniq10k(tmp_path, csv_name="bad.csv")


def test_live_challenge(tmp_path: Path) -> None:
    (tmp_path / "Data").mkdir()
    (tmp_path / "Images" / "trainingImages").mkdir(parents=True)
    names = np.empty((3, 1), dtype=object)
    names[:, 0] = ["t1.bmp", "10.bmp", "11.bmp"]
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": names})
    savemat(
        tmp_path / "Data" / "AllMOS_release.mat",
        {"AllMOS_release": np.array([[25.0, 50.0, 100.0]])},
    )
    _png(tmp_path / "Images" / "trainingImages" / "t1.bmp")
    recs = load_live_challenge(tmp_path)
    assert [r.score for r in recs] == [0.25, 0.5, 1.0]
    assert recs[0].path.endswith("trainingImages/t1.bmp")
    assert recs[1].path == str(tmp_path / "Images" / "10.bmp")
    with pytest.raises(ConfigError, match="AllImages_release.mat"):
        load_live_challenge(tmp_path / "nowhere")


def test_kadid10k(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "dmos.csv").write_text(
        "dist_img,ref_img,dmos,var\nI01_01_01.png,I01.png,4.57,0.3\nI01_01_05.png,I01.png,1.0,0.2\n"
    )
    recs = load_kadid10k(tmp_path)
    assert recs[0].score == pytest.approx(0.8925) and recs[1].score == 0.0
    assert recs[0].group == "I01.png"
    (tmp_path / "dmos.csv").write_text("dist_img,dmos\nx.png,3\n")
    with pytest.raises(ConfigError, match="ref_img"):
        load_kadid10k(tmp_path)


def test_pyiqa_meta_nr_fr_and_splits(tmp_path: Path) -> None:
    (tmp_path / "nr.csv").write_text("image_name,MOS,MOS_zscore\na.jpg,80,1\nb.jpg,20,2\n")
    recs = load_pyiqa_meta(tmp_path / "nr.csv", tmp_path / "img", 0, 100)
    assert [r.score for r in recs] == [0.8, 0.2]
    assert recs[0].path == str(tmp_path / "img" / "a.jpg")
    (tmp_path / "fr.csv").write_text("ref_name,dist_name,mos\nr.bmp,d1.bmp,10\nr.bmp,d2.bmp,60\n")
    (tmp_path / "split.json").write_text(json.dumps({"1": {"train": [0], "val": [], "test": [1]}}))
    (tmp_path / "split.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ConfigError, match="never pickles"):
        load_pyiqa_meta(tmp_path / "fr.csv", tmp_path, 0, 100, split_file=tmp_path / "split.pkl")
    recs = load_pyiqa_meta(
        tmp_path / "fr.csv",
        tmp_path,
        0,
        100,
        higher_is_better=False,
        split_file=tmp_path / "split.json",
    )
    assert [r.score for r in recs] == [pytest.approx(0.9), pytest.approx(0.4)]
    assert [r.split for r in recs] == ["train", "test"] and recs[0].group == "r.bmp"
    assert recs[1].path.endswith("d2.bmp")


def test_generic_csv(tmp_path: Path) -> None:
    (tmp_path / "s.csv").write_text("image,score,split\nx.png,1,train\ny.png,9,\n")
    recs = load_generic_csv(tmp_path / "s.csv", 1, 9, higher_is_better=False)
    assert [(r.score, r.split) for r in recs] == [(1.0, "train"), (0.0, None)]
    assert recs[0].path == str(tmp_path / "x.png")
    with pytest.raises(ConfigError, match="score"):
        (tmp_path / "t.csv").write_text("image,mos\nx.png,1\n")
        load_generic_csv(tmp_path / "t.csv", 0, 1)
    with pytest.raises(ConfigError, match="not found"):
        load_generic_csv(tmp_path / "missing.csv", 0, 1)


def test_mos_dataset(tmp_path: Path) -> None:
    _png(tmp_path / "x.png")
    (tmp_path / "s.csv").write_text("image,score\nx.png,0.7\nmissing.png,0.2\n")
    ds = MosDataset(load_generic_csv(tmp_path / "s.csv", 0, 1), Preprocessor(64, 64), (8, 8))
    item = ds[0]
    assert item["image"].shape == (3, 64, 64) and item["prior"].shape == (1, 16, 16)
    assert item["saliency"].shape == (1, 8, 8)
    assert float(item["saliency"].sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(item["score"]) == pytest.approx(0.7)
    assert int(item["level"]) == -1 and int(item["type_index"]) == -1
    assert item["level"].dtype == torch.int64
    with pytest.raises(InvalidImageError, match="missing.png"):
        ds[1]


def _xlsx(path: Path, rows: list[list[object]], sheet_part: str = "worksheets/data.xml") -> None:
    """A minimal .xlsx as Excel writes one: shared strings (one rich-text), an inline string,
    numbers, a cell without an ``r`` reference, and the sheet found through the workbook rels."""
    shared: list[str] = []
    xml_rows = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(ord('A') + c)}{r}"
            if value is None:
                continue  # empty cell: absent, as Excel writes it
            if isinstance(value, str) and value.startswith("inline:"):
                text = escape(value[len("inline:") :])
                cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{text}</t></is></c>')
            elif isinstance(value, str):
                shared.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{len(shared) - 1}</v></c>')
            elif c == len(row) - 1 and r > 1 and row[c - 1] is not None:
                cells.append(f"<c><v>{value}</v></c>")  # no r: follows the previous cell
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
    items = []
    for i, text in enumerate(shared):
        if i == 0:  # the header's first cell as rich text runs, with a phonetic hint to skip
            half = len(text) // 2
            items.append(
                f"<si><r><t>{escape(text[:half])}</t></r><r><rPr><b/></rPr>"
                f'<t xml:space="preserve">{escape(text[half:])}</t></r><rPh><t>x</t></rPh></si>'
            )
        else:
            items.append(f"<si><t>{escape(text)}</t></si>")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{_NS}" xmlns:r="{_REL_NS}"><sheets>'
            '<sheet name="MOS" sheetId="1" r:id="rId7"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId7" Type="{_REL_NS}/worksheet" Target="{sheet_part}"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/sharedStrings.xml",
            f'<sst xmlns="{_NS}" count="{len(shared)}">{"".join(items)}</sst>',
        )
        z.writestr(
            f"xl/{sheet_part}",
            f'<worksheet xmlns="{_NS}"><sheetData>{"".join(xml_rows)}</sheetData></worksheet>',
        )


def test_read_xlsx_rows(tmp_path: Path) -> None:
    _xlsx(
        tmp_path / "t.xlsx",
        [["Image name", "MOS", None, "Note"], ["inline:a&b.jpg", 42.5, 3, 7]],
    )
    # The header's gap stays a gap (cells are placed by their reference, not their order).
    assert read_xlsx_rows(tmp_path / "t.xlsx") == [
        ["Image name", "MOS", "", "Note"],
        ["a&b.jpg", "42.5", "3", "7"],
    ]
    (tmp_path / "x.xlsx").write_bytes(b"PK not really")
    with pytest.raises(ConfigError, match="not an .xlsx"):
        read_xlsx_rows(tmp_path / "x.xlsx")
    with zipfile.ZipFile(tmp_path / "dtd.xlsx", "w") as z:
        z.writestr("xl/worksheets/sheet1.xml", '<!DOCTYPE x [<!ENTITY a "aaaa">]><worksheet/>')
    with pytest.raises(ConfigError, match="DTD"):
        read_xlsx_rows(tmp_path / "dtd.xlsx")


def test_spaq_xlsx_and_csv_export(tmp_path: Path) -> None:
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "TestImage").mkdir()
    rows = [
        ["Image name", "MOS", "Brightness", "Colorfulness", "Contrast", "Noisiness", "Sharpness"],
        ["00001.jpg", 42.5, 40, 41, 42, 43, 44],
        ["00002.jpg", 100, 90, 91, 92, 93, 94],
        ["00003.jpg", 0, 10, 11, 12, 13, 14],
    ]
    _xlsx(tmp_path / SPAQ_ANNOTATIONS, rows)
    recs = load_spaq(tmp_path)
    assert [r.score for r in recs] == [0.425, 1.0, 0.0] and recs[0].raw == 42.5
    assert recs[1].path == str(tmp_path / "TestImage" / "00002.jpg")
    assert recs[0].dist is None and recs[0].split is None  # no released distribution/split
    (tmp_path / SPAQ_ANNOTATIONS).unlink()
    (tmp_path / "Annotations" / "MOS and Image attribute scores.csv").write_text(
        "Image name,MOS,Brightness\n00001.jpg,42.5,40\n00002.jpg,100,90\n"
    )
    assert [r.score for r in load_spaq(tmp_path)] == [0.425, 1.0]
    (tmp_path / "other.csv").write_text("Image name,mos\n00001.jpg,1\n")
    with pytest.raises(ConfigError, match="MOS"):
        load_spaq(tmp_path, annotations="other.csv")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(ConfigError, match="save it as .xlsx or CSV"):
        load_spaq(tmp_path, annotations="old.xls")
    _xlsx(tmp_path / "bad.xlsx", [["Image name", "MOS"], ["00001.jpg", 101]])
    with pytest.raises(ConfigError, match="range"):
        load_spaq(tmp_path, annotations="bad.xlsx")
    with pytest.raises(ConfigError, match="SPAQ annotations not found"):
        load_spaq(tmp_path / "nowhere")
