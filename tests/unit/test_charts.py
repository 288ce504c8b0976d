"""The console's server-drawn charts: valid SVG, labelled for assistive technology, styled by
class only, escaped, and drawn even with nothing to show."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from projections.web import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))  # noqa: S314  # our own output
    assert root.tag == f"{SVG}svg"
    return root


def labelled(root: ET.Element, ident: str, title: str, desc: str) -> None:
    assert root.get("role") == "img" and root.get("class") == "chart"
    assert root.get("aria-labelledby") == f"{ident}-title {ident}-desc"
    first, second = root[0], root[1]
    assert (first.tag, first.get("id"), first.text) == (f"{SVG}title", f"{ident}-title", title)
    assert (second.tag, second.get("id"), second.text) == (f"{SVG}desc", f"{ident}-desc", desc)


def no_inline_style(root: ET.Element) -> None:
    for element in root.iter():
        assert "style" not in element.attrib
        assert element.tag != f"{SVG}script"


def test_a_line_chart_is_valid_labelled_svg_with_a_line_per_series() -> None:
    labels = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    svg = charts.line_chart(
        "c1",
        "Consents",
        "Per day",
        labels,
        [charts.Series("given", [0, 1, 3, 2]), charts.Series("withdrawn", [0, 0, 1, 0])],
    )
    root = parse(svg)
    labelled(root, "c1", "Consents", "Per day")
    no_inline_style(root)
    lines = root.findall(f"{SVG}polyline")
    assert [line.get("class") for line in lines] == ["line s0", "line s1"]
    assert [len(line.get("points", "").split()) for line in lines] == [4, 4]
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "2026-01-01" in texts and "2026-01-04" in texts
    assert "4" in texts  # the value axis tops at the next whole step above 3


def test_values_are_drawn_in_proportion_to_the_axis() -> None:
    root = parse(charts.line_chart("c", "t", "d", ["a", "b"], [charts.Series("x", [0, 12])]))
    points = root.find(f"{SVG}polyline").get("points", "").split()  # type: ignore[union-attr]
    (x0, y0), (x1, y1) = (tuple(float(v) for v in p.split(",")) for p in points)
    assert x0 == charts.LEFT and x1 == charts.WIDTH - charts.RIGHT
    assert y0 == charts.HEIGHT - charts.BOTTOM and y1 == charts.TOP


@pytest.mark.parametrize(
    "svg",
    [
        charts.line_chart("e", "Empty", "Nothing", [], [], empty="No data"),
        charts.line_chart("e", "Empty", "Nothing", ["a"], [], empty="No data"),
        charts.bar_chart("e", "Empty", "Nothing", [], empty="No data"),
    ],
)
def test_an_empty_chart_is_a_labelled_frame_saying_so(svg: str) -> None:
    root = parse(svg)
    labelled(root, "e", "Empty", "Nothing")
    assert [t.text for t in root.iter(f"{SVG}text")] == ["No data"]
    assert root.find(f"{SVG}polyline") is None and root.find(f"{SVG}rect[@class='bar s0']") is None


def test_a_single_day_and_all_zero_values_still_draw() -> None:
    root = parse(charts.line_chart("one", "t", "d", ["2026-01-01"], [charts.Series("x", [0])]))
    assert len(root.findall(f"{SVG}polyline")) == 1
    assert "4" in [t.text for t in root.iter(f"{SVG}text")]  # four steps of at least 1


def test_labels_titles_and_names_are_escaped() -> None:
    hostile = '<script>alert("x")</script> & "quoted"'
    svg = charts.bar_chart(
        'id"x', hostile, hostile, [(hostile, 3), ("b", 1)], empty="none"
    ) + charts.line_chart("l", hostile, hostile, [hostile], [charts.Series(hostile, [1])])
    assert "<script>" not in svg
    bar = parse(charts.bar_chart("b", hostile, hostile, [(hostile, 3)]))
    assert bar[0].text == hostile and bar[1].text == hostile
    line = parse(charts.line_chart("l", "t", "d", [hostile], [charts.Series(hostile, [1])]))
    assert line.find(f"{SVG}polyline/{SVG}title").text == hostile  # type: ignore[union-attr]
    no_inline_style(bar)


def test_a_bar_chart_draws_a_bar_and_its_value_per_item_and_shortens_long_labels() -> None:
    long = "a-recipient-with-a-very-long-name-indeed"
    root = parse(charts.bar_chart("b", "By recipient", "Counts", [(long, 5), ("bank", 2)]))
    labelled(root, "b", "By recipient", "Counts")
    bars = root.findall(f"{SVG}rect")
    assert [b.get("class") for b in bars] == ["bar s0", "bar s0"]
    widths = [float(b.get("width", "0")) for b in bars]
    assert widths[0] > widths[1] > 0
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "5" in texts and "2" in texts and "bank" in texts
    assert long not in texts and any(t and t.endswith("…") for t in texts)


def test_nice_top_rounds_up_to_a_readable_axis() -> None:
    found = [charts.nice_top(v) for v in (0, 1, 3, 7, 11, 240, 2500)]
    assert found == [4.0, 4.0, 4.0, 8.0, 12.0, 240.0, 3200.0]
    for value in range(0, 5000, 7):
        top = charts.nice_top(value)
        assert top >= value and (top / 4).is_integer()
    assert charts.colour(7) == "s1"
