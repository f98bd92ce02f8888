"""`python -m genforge` is the `genforge` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
