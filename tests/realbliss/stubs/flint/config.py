"""Stub of flint.config: BLISS checks SCAN_DISPLAY.extra_args against Flint's parser."""


def configure_parser_arguments(parser) -> None:
    """Accept any Flint argument: nothing will start Flint."""
    parser.add_argument("flint_args", nargs="*")
