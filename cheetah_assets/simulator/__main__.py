"""``python -m cheetah_assets.simulator --port 8765 --seed demo``."""

from .server import main

if __name__ == "__main__":
    main()
