from setuptools import find_packages, setup

# Declarative on purpose: nothing here imports telesession.
setup(
    name="telesession",
    version="0.1.0",
    description="Persistent, typed, race-free sessions for pyTelegramBotAPI bots",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["telesession", "telesession.*"]),
    package_data={"telesession": ["py.typed"]},
    python_requires=">=3.11",
    entry_points={"console_scripts": ["telesession = telesession.cli:main"]},
    install_requires=[
        "pyTelegramBotAPI>=4.20.0",
        "dataclasses-json>=0.6.7",
        "filelock>=3.20.1",
        "orjson>=3.9",
        "tqdm>=4.66.3",  # the command line's progress bars; only telesession.cli imports it
    ],
    extras_require={
        "redis": ["redis>=5.0"],
        "test": ["pytest>=8", "pytest-timeout>=2.2", "hypothesis>=6.100", "fastapi", "uvicorn"],  # last two: telebot's webhook listener
        "typing": ["mypy>=1.10"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Typing :: Typed",
        "Topic :: Communications :: Chat",
    ],
)
