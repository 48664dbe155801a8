"""The nbval comparison of book/nbval_rounding.py: one unit of the last printed digit, nothing more."""

import pytest

import nbval_rounding  # book/, on the path by pyproject.toml

same_printed = nbval_rounding.same_printed


@pytest.mark.parametrize("reference, test", [
    ("<td>20.44</td>", "<td>20.43</td>"),            # Appendix F's mean on two CI machines
    ("<td>-0.00</td>", "<td>0.00</td>"),
    ("p = 1.2e-04", "p = 1.3e-04"),
    ("p = 1.00e-03", "p = 9.99e-04"),                 # across a power of ten
    ("drop 9.99 %\nn 48", "drop 10.00 %\nn 48"),
    ("   a     b\n0  9.99  1\n", "    a     b\n0  10.00  1\n"),   # a text table's padding follows the widest number
    ("holds (n=48, [0.12, 0.30])", "holds (n=48, [0.13, 0.30])"),
    ("a drop of 20.43.", "a drop of 20.44."),         # ending a sentence
    ("20.43%", "20.44%"),
])
def test_one_unit_of_rounding_is_the_same_output(reference, test):
    assert same_printed(reference, test)


@pytest.mark.parametrize("reference, test", [
    ("<td>20.43</td>", "<td>20.45</td>"),             # two units
    ("<td>20.4</td>", "<td>20.6</td>"),
    ("n = 48", "n = 49"),                              # whole numbers are counts: exact
    ("holds (n=48)", "inconclusive (n=48)"),          # a verdict's word
    ("1.2 2.3", "1.2"),                               # a number missing
    ("a b", "ab"),                                    # spaces count, a run of them as one
    ("a\nb", "a b"),
    ("p = 1.2e-04", "p = 1.2e-03"),
    ("n = 48.", "n = 49."),                            # a count ending a sentence
    ("commit 3e12ab", "commit 4e12ab"),                # glued to letters: text
    ("Qwen2.5-7B", "Qwen2.4-7B"),
    ("v1.2.3", "v1.3.3"),
    ("20.4", "20.49"),                                 # printed otherwise: not a rounding flip
    ("1e5", "2e5"),
])
def test_anything_else_is_a_different_output(reference, test):
    assert not same_printed(reference, test)


def test_nbval_compares_with_it():
    """Installed, nbval's sanitizer hands on outputs that compare with one unit of rounding, as nbval compares them."""
    from nbval.plugin import IPyNbCell

    nbval_rounding.install()

    class Parent:
        sanitize_patterns = {r"0x[0-9a-f]+": "0xADDRESS"}

    cell = IPyNbCell.__new__(IPyNbCell)
    cell.parent = Parent()
    ref, test = cell.sanitize("20.44 at 0x7f"), cell.sanitize("20.43 at 0x80")
    assert not ref != test
    assert cell.sanitize("20.43") != cell.sanitize("20.45")
