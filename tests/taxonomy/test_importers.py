"""Label paths and the taxonomy importers, on the real files and on malformed ones."""

from __future__ import annotations

import pytest

from ctax.errors import InvalidInput
from ctax.taxonomy.importers import parse_iab_tsv, parse_path_lines, parse_taxonomy_file
from ctax.taxonomy.paths import LabelPath

HEADER = "Unique ID\tParent ID\tName\tTier 1\tTier 2\tTier 3\n"


def test_paths_escape_slashes_inside_names_and_round_trip() -> None:
    path = LabelPath.of("Consumer Electronics", "Printers/Copiers/Scanners/Fax")
    assert str(path) == "Consumer Electronics/Printers\\/Copiers\\/Scanners\\/Fax"
    assert LabelPath.parse(str(path)) == path
    assert LabelPath.parse(" Service / Vehicles /Maintenance/ Honda ").names == (
        "Service", "Vehicles", "Maintenance", "Honda")
    assert LabelPath.parse("A\\\\B/C").names == ("A\\B", "C")
    assert [str(a) for a in LabelPath.parse("A/B/C").ancestors()] == ["A/B", "A"]
    assert LabelPath.parse("A/B").is_ancestor_of(LabelPath.parse("A/B/C"))


@pytest.mark.parametrize("bad", ["", "A//B", "/A", "A/", "A/\\x", "A/\x07bell", "x" * 201, "/".join("abcdefghi")])
def test_bad_paths_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        LabelPath.parse(bad)


def test_label_phrases_follow_the_template() -> None:
    path = LabelPath.parse("Service/Vehicles/Maintenance/Honda")
    assert path.phrase("{path}") == "Service/Vehicles/Maintenance/Honda"
    assert path.phrase("an ad for {leaf}, under {parent}") == "an ad for Honda, under Maintenance"
    assert path.phrase("{leaf} ({ancestors})") == "Honda (Service > Vehicles > Maintenance)"
    assert LabelPath.parse("PSA").phrase("an ad for {leaf}, under {parent}") == "an ad for PSA, under PSA"


def test_iab_file_flaws_are_handled_on_purpose(shared_data) -> None:
    result = parse_iab_tsv((shared_data / "iab_ad_product_taxonomy_2.0.tsv").read_bytes())
    by_id = {item.iab_id: item for item in result.labels}
    assert len(result.labels) == 583 and None not in by_id
    assert str(by_id["1000"].path) == "Ad Safety Risk"  # self-parent tier-1: a root
    assert str(by_id["1037"].path.parent) == "Business and Industrial/Industrials"  # self-parent tier-3
    assert by_id["1120"].path.leaf == "Video Games"  # trailing space trimmed
    assert by_id["1116"].path.names == ("Consumer Electronics", "Printers/Copiers/Scanners/Fax")
    warned = {w["line"] for w in result.warnings}
    assert {2, 39, 40, 122, 428} <= warned


def test_iab_rows_with_structural_errors_name_their_line() -> None:
    cases = {
        HEADER + "1\t\tA\tA\t\t\n1\t\tB\tB\t\t\n": "line 3: Unique ID 1 already used on line 2",
        HEADER + "x\t\tA\tA\t\t\n": "line 2: Unique ID must be a number",
        HEADER + "1\t\tA\t\tB\t\n": "line 2: Tier 1 is empty",
        HEADER + "1\t\tA\tA\t\t\n2\t1\tB\tA\t\tC\n": "line 3: tiers have a gap",
        HEADER + "1\t\tA\tA\t\t\n2\t\tA\tA\t\t\n": "line 3: path A already defined on line 2",
        "Unique ID\tName\n1\tA\n": "line 1: IAB header lacks column(s) Parent ID",
    }
    for text, message in cases.items():
        with pytest.raises(InvalidInput) as error:
            parse_iab_tsv(text.encode())
        assert message in error.value.message


def test_path_lines_add_ancestors_skip_comments_and_warn_on_duplicates(shared_data) -> None:
    result = parse_path_lines("# a comment\nProduct/Vehicles/Cars\n\nProduct/Vehicles/Cars\nPSA\n")
    assert [str(item.path) for item in result.labels] == ["PSA", "Product", "Product/Vehicles",
                                                          "Product/Vehicles/Cars"]
    assert result.warnings[0]["line"] == 4
    pitt = parse_taxonomy_file((shared_data / "pitt_ads_taxonomy.txt").read_bytes())
    assert len(pitt.labels) == 65 and sum(1 for item in pitt.labels if item.path.depth == 1) == 3
    with pytest.raises(InvalidInput, match="tab"):
        parse_path_lines("A\tB\n")
