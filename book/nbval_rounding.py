"""nbval's check of printed outputs, with one unit of rounding allowed.

nbval compares a checked cell's output (``# NBVAL_CHECK_OUTPUT``) with the committed one as text. The toy runs are
fp32 on the CPU, and the BLAS picks its kernels by the processor's instruction set, so a number lying within ~1e-5
of a rounding boundary prints on either side of it on different machines with the same code: a mean of the
Appendix F table printed 20.44 on one CI machine and 20.43 on another.

So two outputs are the same printed output when, read as text and numbers:
- the text between the numbers is the same, runs of spaces counted as one (a text table pads its columns to the
  widest number);
- each pair of decimal numbers printed alike (as many decimals, both with an exponent or both without) differs by
  at most one unit of the last printed digit: 20.43 and 20.44 are the same, 20.43 and 20.45 are not, nor are 20.4
  and 20.44; 1.00e-03 and 9.99e-04 are the same;
- every other number (whole numbers: counts, n, indices; a number glued to letters or dots, as in a version or
  a hash) is the same text.

Anything else, a verdict's word or a count, still fails the check.
"""

import re

# a number standing alone: not inside a word, a version (1.2.3) or a hash; a full stop after it ends a sentence
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.(?P<decimals>\d+))?(?:[eE](?P<exponent>[-+]?\d+))?(?!\w|\.\d)")


def _parts(text: str) -> tuple[list[str], list[re.Match]]:
    """The text between the numbers (runs of spaces as one) and the numbers of ``text``."""
    numbers = list(NUMBER.finditer(text))
    between, start = [], 0
    for m in numbers:
        between.append(re.sub(r"[ \t]+", " ", text[start:m.start()]))
        start = m.end()
    between.append(re.sub(r"[ \t]+", " ", text[start:]))
    return between, numbers


def _same_number(a: re.Match, b: re.Match) -> bool:
    if a.group() == b.group():
        return True
    if a.group("decimals") is None or b.group("decimals") is None or \
            len(a.group("decimals")) != len(b.group("decimals")) or \
            (a.group("exponent") is None) != (b.group("exponent") is None):
        return False
    unit = max(10.0 ** (int(m.group("exponent") or 0) - len(m.group("decimals"))) for m in (a, b))
    # the decimal difference of two printed numbers, as binary floats, may exceed one unit by an ulp
    return abs(float(a.group()) - float(b.group())) <= unit * (1 + 1e-9)


def same_printed(reference: str, test: str) -> bool:
    """Whether ``test`` prints the same as ``reference`` up to one unit of rounding (the module docstring's rules)."""
    if reference == test:
        return True
    (between_ref, numbers_ref), (between_test, numbers_test) = _parts(reference), _parts(test)
    return between_ref == between_test and len(numbers_ref) == len(numbers_test) and \
        all(_same_number(a, b) for a, b in zip(numbers_ref, numbers_test))


class Printed(str):
    """A sanitized output that equals another one when :func:`same_printed` says so (nbval compares with ``!=``)."""

    def __eq__(self, other):
        return isinstance(other, str) and same_printed(str(self), str(other))

    def __ne__(self, other):
        return not self.__eq__(other)

    # equal outputs may hash apart: nbval only compares them, never puts them in a set or a dict
    __hash__ = str.__hash__


def pytest_configure(config) -> None:
    """A pytest plugin (pyproject.toml: ``-p nbval_rounding``, ``book/`` on the path): installed for every run."""
    install()


def install() -> None:
    """Make nbval compare printed outputs with :func:`same_printed`: its sanitizer (the regexes of
    ``nbval_sanitize.cfg``) hands every output on as a :class:`Printed`."""
    from nbval.plugin import IPyNbCell

    sanitize = IPyNbCell.sanitize
    if getattr(sanitize, "rounding", False):
        return

    def sanitize_printed(self, s):
        s = sanitize(self, s)
        return Printed(s) if isinstance(s, str) else s

    sanitize_printed.rounding = True
    IPyNbCell.sanitize = sanitize_printed
