"""Read the first worksheet of an .xlsx file as rows of strings, with the standard library.

An .xlsx is a zip of XML parts (ECMA-376): ``xl/workbook.xml`` lists the sheets,
``xl/_rels/workbook.xml.rels`` maps each to its part, ``xl/sharedStrings.xml`` holds the
text cells' strings. Reading SPAQ's annotation sheet needs nothing more, so saliq does not
depend on openpyxl. Cell values come back as their stored text (numbers as written, e.g.
"42.5"); dates and formulas are not interpreted.
"""

from __future__ import annotations

import os
import posixpath
import re
import zipfile
from xml.etree import ElementTree

from saliq.errors import ConfigError

MAX_PART_BYTES = 256 * 1024 * 1024  # an annotation sheet is a few MB; refuse zip bombs
_COLUMN = re.compile(r"([A-Z]+)")


def _local(tag: str) -> str:
    # Transitional and strict OOXML use different namespaces; match on local names.
    return tag.rsplit("}", 1)[-1]


def _parse(archive: zipfile.ZipFile, name: str, source: str) -> ElementTree.Element:
    info = archive.getinfo(name)
    if info.file_size > MAX_PART_BYTES:
        raise ConfigError(
            f"{source}: part {name} is {info.file_size} bytes; not an annotation sheet"
        )
    data = archive.read(name)
    # No OOXML part carries a DTD; refusing one rules out entity-expansion attacks.
    if b"<!DOCTYPE" in data[:4096].upper():
        raise ConfigError(f"{source}: part {name} declares a DTD; not a valid .xlsx file")
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise ConfigError(f"{source}: part {name} is not valid XML ({exc})") from None


def _first_sheet_part(archive: zipfile.ZipFile, source: str) -> str:
    names = set(archive.namelist())
    if "xl/workbook.xml" in names and "xl/_rels/workbook.xml.rels" in names:
        workbook = _parse(archive, "xl/workbook.xml", source)
        sheets = [el for el in workbook.iter() if _local(el.tag) == "sheet"]
        rels = _parse(archive, "xl/_rels/workbook.xml.rels", source)
        targets = {el.get("Id"): el.get("Target", "") for el in rels.iter()}
        if sheets:
            rel_id = next((v for k, v in sheets[0].attrib.items() if _local(k) == "id"), None)
            target = targets.get(rel_id, "")
            if target:
                part = (
                    target.lstrip("/") if target.startswith("/") else posixpath.join("xl", target)
                )
                part = posixpath.normpath(part)
                if part in names:
                    return part
    if "xl/worksheets/sheet1.xml" in names:
        return "xl/worksheets/sheet1.xml"
    raise ConfigError(f"{source}: no worksheet found; not an .xlsx workbook")


def _text(element: ElementTree.Element) -> str:
    # A string item is one <t> or rich-text runs <r><t>; phonetic hints (<rPh>) are skipped.
    parts = []
    for child in element:
        name = _local(child.tag)
        if name == "t":
            parts.append(child.text or "")
        elif name == "r":
            parts += [t.text or "" for t in child if _local(t.tag) == "t"]
    return "".join(parts)


def _column_index(ref: str | None, fallback: int) -> int:
    match = _COLUMN.match(ref or "")
    if not match:
        return fallback
    index = 0
    for char in match.group(1):
        index = index * 26 + (ord(char) - ord("A") + 1)
    return index - 1


def read_xlsx_rows(path: str | os.PathLike[str]) -> list[list[str]]:
    """Rows of the workbook's first sheet, each a list of cell strings ("" where empty)."""
    source = os.fspath(path)
    if not os.path.isfile(source):
        raise ConfigError(f"spreadsheet not found: {source}")
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile:
        raise ConfigError(
            f"{source}: not an .xlsx file (not a zip archive); an old .xls must be saved as "
            ".xlsx or exported to CSV"
        ) from None
    with archive:
        shared: list[str] = []
        if "xl/sharedStrings.xml" in archive.namelist():
            root = _parse(archive, "xl/sharedStrings.xml", source)
            shared = [_text(si) for si in root if _local(si.tag) == "si"]
        sheet = _parse(archive, _first_sheet_part(archive, source), source)
    rows: list[list[str]] = []
    for row in (el for el in sheet.iter() if _local(el.tag) == "row"):
        cells: dict[int, str] = {}
        for cell in (c for c in row if _local(c.tag) == "c"):
            col = _column_index(cell.get("r"), max(cells, default=-1) + 1)
            kind = cell.get("t", "n")
            value = next((c for c in cell if _local(c.tag) == "v"), None)
            if kind == "inlineStr":
                inline = next((c for c in cell if _local(c.tag) == "is"), None)
                cells[col] = _text(inline) if inline is not None else ""
            elif value is None or value.text is None:
                cells[col] = ""
            elif kind == "s":
                try:
                    cells[col] = shared[int(value.text)]
                except (ValueError, IndexError):
                    raise ConfigError(
                        f"{source}: cell {cell.get('r')} points at a missing shared string"
                    ) from None
            else:
                cells[col] = value.text
        width = max(cells, default=-1) + 1
        rows.append([cells.get(i, "") for i in range(width)])
    return rows
