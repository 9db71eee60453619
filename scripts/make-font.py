#!/usr/bin/env python3
"""Build assets/fonts/NotoSansSC-GB2312.otf: Noto Sans CJK SC (face 2 of Debian's
fonts-noto-cjk NotoSansCJK-Regular.ttc) subset to every GB2312 character plus ASCII and a few
symbols the wall draws. Needs: apt-get install fonts-noto-cjk; pip install fonttools."""
import pathlib
import subprocess
import sys
import tempfile

SRC = pathlib.Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")
OUT = pathlib.Path(__file__).resolve().parent.parent / "assets/fonts/NotoSansSC-GB2312.otf"


def gb2312_chars():
    chars = set(chr(c) for c in range(0x20, 0x7F))
    for hi in range(0xA1, 0xF8):
        for lo in range(0xA1, 0xFF):
            try:
                chars.add(bytes([hi, lo]).decode("gb2312"))
            except UnicodeDecodeError:
                pass
    chars.update("·—–…‘’“”•●○■□▲△▼▽◆◇★☆→←↑↓±×÷°℃％，。、；：？！（）《》【】「」…—￥")
    return chars


def main():
    if not SRC.exists():
        sys.exit(f"{SRC} is missing: apt-get install fonts-noto-cjk")
    chars = gb2312_chars()
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        f.write("".join(sorted(chars)))
        text_file = f.name
    subprocess.run(
        [sys.executable, "-m", "fontTools.subset", str(SRC), "--font-number=2",
         f"--text-file={text_file}", "--layout-features=*", f"--output-file={OUT}"],
        check=True,
    )
    print(f"{OUT}: {len(chars)} characters, {OUT.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
