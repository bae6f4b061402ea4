"""CHANGELOG.md records every file format and JSON schema id the code reads or writes, and the
version the package reports is the one in cond/_version.py."""

import glob
import os
import re

from data import ROOT

import cond


def test_every_format_and_schema_id_is_in_the_changelog():
    ids = set()
    for path in glob.glob(os.path.join(ROOT, "cond", "**", "*.py"), recursive=True):
        ids |= set(re.findall(r"[\"'](cond[.-][a-z-]+/\d+)[\"']", open(path, encoding="utf-8").read()))
    assert {"cond-lowrank/3", "cond.compress/3", "cond.inspect/1"} <= ids  # the scan finds them
    changelog = open(os.path.join(ROOT, "CHANGELOG.md"), encoding="utf-8").read()
    missing = sorted(i for i in ids if f"`{i}`" not in changelog)
    assert not missing, f"CHANGELOG.md does not record {missing}"


def test_the_version_is_the_one_in_version_py():
    text = open(os.path.join(ROOT, "cond", "_version.py"), encoding="utf-8").read()
    assert re.search(r"__version__ = \"(\d+\.\d+\.\d+)\"", text).group(1) == cond.__version__
