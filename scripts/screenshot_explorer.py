"""Take the explorer screenshot that README.md and docs/explorer.md show (docs/explorer.png).

    python scripts/screenshot_explorer.py                    # the packaged model, docs/explorer.png
    python scripts/screenshot_explorer.py --model gpt2 --out /tmp/explorer-124m.png

Starts the explorer's app on a free port of 127.0.0.1 in this process, opens it in Debian's
Chromium through Playwright (`apt-get install -y chromium`; `pip install -e ".[test]"`), lets
the page trace its first prompt, steps three tokens so the history and the arithmetic show,
picks a layer and a head of the packaged model that have learned something, and saves the top of the page: the tokens,
the next-token chart and the attention views.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAIT_MS = 60_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2-shakespeare", help="model (default gpt2-shakespeare)")
    parser.add_argument("--engine", default="numpy", help="engine for the traces (default numpy)")
    parser.add_argument("--layer", type=int, default=2, help="attention layer to show (default 2)")
    parser.add_argument("--head", type=int, default=2, help="the head to zoom into (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer.png", help="PNG to write")
    parser.add_argument("--height", type=int, default=2250, help="pixels of the page to keep (default 2250)")
    args = parser.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no Chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    from gpt2.explore.app import create_app
    from gpt2.explore.explorer import Explorer
    from gpt2.server.run import BackgroundServer
    from gpt2.weights import load_model

    config, params = load_model(args.model)
    explorer = Explorer(config, params, name=args.model, engine=args.engine)
    server = BackgroundServer(create_app(explorer), start_timeout=60).start()
    base = server.url + "/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--headless=new"])
            page = browser.new_page(viewport={"width": 1050, "height": args.height}, device_scale_factor=1)
            page.set_default_timeout(WAIT_MS)
            page.goto(base)

            def settle(traced: int) -> None:
                page.wait_for_function(
                    "(n) => Number(document.body.dataset.traced || 0) >= n && document.body.dataset.pending === '0'",
                    arg=traced,
                )

            settle(1)
            page.fill("#seed", "7")
            for step in range(3):
                page.click("#step")
                settle(2 + step)
            layer, head = min(args.layer, config.n_layer - 1), min(args.head, config.n_head - 1)
            page.select_option("#layer", str(layer))
            page.wait_for_function("() => document.body.dataset.pending === '0'")
            page.click(f'#attn-grid canvas[data-layer="{layer}"][data-head="{head}"]')  # zoom into one map
            page.wait_for_timeout(300)
            page.screenshot(path=str(args.out), clip={"x": 0, "y": 0, "width": 1050, "height": args.height})
            browser.close()
    finally:
        server.stop()
        explorer.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
