"""What the command-line entry points share."""


def config_overrides(argv: list[str]) -> tuple[str, ...]:
  """The --config.FIELD=VALUE flags of a command line, as given."""
  return tuple(arg for arg in argv if arg.startswith('--config.'))
