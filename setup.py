import re
from pathlib import Path

from setuptools import find_packages, setup

# Declarative on purpose: nothing here imports telesession (its dependencies may not be there yet);
# the version is read from the one place it is written.
HERE = Path(__file__).parent
VERSION = re.search(r'^__version__ = "([^"]+)"$', (HERE / "telesession" / "__init__.py").read_text(encoding="utf-8"), re.M)
assert VERSION, "telesession/__init__.py must say __version__ = \"X.Y.Z\""

setup(
    name="telesession",
    version=VERSION.group(1),
    description="Persistent, typed, race-free sessions for pyTelegramBotAPI bots",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license_expression="MIT",  # an SPDX expression, which setuptools prefers to License :: classifiers
    license_files=["LICENSE"],
    packages=find_packages(include=["telesession", "telesession.*"]),
    package_data={"telesession": ["py.typed"]},
    python_requires=">=3.11",
    entry_points={"console_scripts": ["telesession = telesession.cli:main"]},
    install_requires=[
        "pyTelegramBotAPI>=4.20.0",
        "dataclasses-json>=0.6.7",
        "filelock>=3.20.1; sys_platform == 'win32'",  # only FileStorage's Windows locks use it
        "orjson>=3.9",
        "tqdm>=4.66.3",  # the command line's progress bars; only telesession.cli imports it
    ],
    extras_require={
        "redis": ["redis>=5.0"],
        "async": ["aiohttp"],  # AsyncTeleBot's HTTP client (pyTelegramBotAPI requires it only since 4.2x)
        "test": [
            "pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100",
            "aiohttp",  # AsyncTeleBot's tests
            "fastapi", "uvicorn",  # telebot's webhook listener
        ],
        "typing": ["mypy>=1.10", "filelock>=3.20.1"],  # filelock: mypy checks the Windows lock path against its types
    },
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Developers",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
        "Topic :: Communications :: Chat",
    ],
)
