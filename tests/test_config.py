"""Settings: sources and precedence, relative paths, validation reported all at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from kmssign.config import (
    DEFAULT_JOBS,
    DEFAULT_TIMESTAMP_URLS,
    Settings,
    find_pyproject,
    load_settings,
)
from kmssign.errors import ConfigError


def project(root: Path, body: str, name: str = "pyproject.toml") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    path.write_text('[project]\nname = "demo"\n\n' + body, encoding="utf-8")
    return path


def problems(**kwargs: object) -> list[str]:
    kwargs.setdefault("env", {})
    with pytest.raises(ConfigError) as info:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return info.value.problems


# -- finding the file --------------------------------------------------------------------------


def test_find_pyproject_walks_up(tmp_path: Path) -> None:
    outer = project(tmp_path, "")
    inner = project(tmp_path / "sub", "")
    deep = tmp_path / "sub" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_pyproject(deep) == inner
    assert find_pyproject(tmp_path / "sub") == inner
    assert find_pyproject(tmp_path) == outer
    (tmp_path / "elsewhere").mkdir()
    assert find_pyproject(tmp_path / "elsewhere") == outer


def test_find_pyproject_none(tmp_path: Path) -> None:
    if find_pyproject(tmp_path) is not None:
        pytest.skip("a pyproject.toml exists above the temporary directory")
    assert load_settings(cwd=tmp_path, env={}) == Settings()
    assert load_settings(cwd=tmp_path, env={}).source is None


def test_defaults_without_a_table(tmp_path: Path) -> None:
    path = project(tmp_path, "")
    settings = load_settings(cwd=tmp_path, env={})
    assert settings == Settings()
    assert settings.source == path
    assert settings.timestamp_urls == DEFAULT_TIMESTAMP_URLS
    assert settings.jobs == DEFAULT_JOBS
    assert settings.key_id is None and settings.key_file is None  # not an error here


@pytest.mark.posix  # /abs/root.pem is absolute
def test_every_key_from_the_file(tmp_path: Path) -> None:
    path = project(
        tmp_path,
        """
[tool.kmssign]
key-id = "alias/release"
certificate = "certs/leaf.pem"
chain = ["certs/int.pem", "/abs/root.pem"]
region = "eu-west-1"
profile = "signing"
endpoint-url = "http://127.0.0.1:5000"
digest = "SHA384"
timestamp-urls = ["http://tsa.example/a", "https://tsa.example/b"]
timestamp = "optional"
description = "Demo app"
url = "https://example.com"
include = ["*.exe", "*.dll"]
exclude = "tests/**"
skip-signed = false
jobs = 4
timestamp-timeout = 2.5
kms-timeout = 30
""",
    )
    assert load_settings(cwd=tmp_path, env={}) == Settings(
        key_id="alias/release",
        certificate=tmp_path / "certs/leaf.pem",
        chain=(tmp_path / "certs/int.pem", Path("/abs/root.pem")),
        region="eu-west-1",
        profile="signing",
        endpoint_url="http://127.0.0.1:5000",
        digest="sha384",
        timestamp_urls=("http://tsa.example/a", "https://tsa.example/b"),
        timestamp="optional",
        description="Demo app",
        url="https://example.com",
        include=("*.exe", "*.dll"),
        exclude=("tests/**",),
        skip_signed=False,
        jobs=4,
        timestamp_timeout=2.5,
        kms_timeout=30.0,
        source=path,
    )


# -- precedence --------------------------------------------------------------------------------

LAYERS = ["file", "table", "env", "cli"]


@pytest.mark.parametrize("top", LAYERS)
def test_precedence_matrix(tmp_path: Path, top: str) -> None:
    """Every layer up to ``top`` sets region/jobs/digest; the highest of them wins."""
    upto = LAYERS[: LAYERS.index(top) + 1]
    values = {
        "file": ("file-region", 1, "sha256"),
        "table": ("table-region", 2, "sha384"),
        "env": ("env-region", 3, "sha512"),
        "cli": ("cli-region", 4, "sha256"),
    }
    region, jobs, digest = values["file"]
    project(tmp_path, f'[tool.kmssign]\nregion = "{region}"\njobs = {jobs}\ndigest = "{digest}"\n')
    table: dict[str, object] = {}
    env: dict[str, str] = {"UNRELATED": "x", "KMSSIGN_KEY_PASSWORD": "not a setting"}
    overrides: dict[str, object] = {"region": None, "jobs": None}  # None: flag not given
    if "table" in upto:
        region, jobs, digest = values["table"]
        table = {"region": region, "jobs": jobs, "digest": digest}
    if "env" in upto:
        region, jobs, digest = values["env"]
        env.update(KMSSIGN_REGION=region, KMSSIGN_JOBS=str(jobs), KMSSIGN_DIGEST=digest)
    if "cli" in upto:
        region, jobs, digest = values["cli"]
        overrides = {"region": region, "jobs": jobs, "digest": digest}
    settings = load_settings(cwd=tmp_path, env=env, table=table, overrides=overrides)
    assert (settings.region, settings.jobs, settings.digest) == values[top]


def test_layers_merge_key_by_key(tmp_path: Path) -> None:
    project(tmp_path, '[tool.kmssign]\nregion = "a"\nprofile = "a"\ndescription = "a"\nurl = "a"\n')
    settings = load_settings(
        cwd=tmp_path,
        table={"profile": "b", "description": "b", "url": "b"},
        env={"KMSSIGN_DESCRIPTION": "c", "KMSSIGN_URL": "c"},
        overrides={"url": "d", "description": None},
    )
    assert (settings.region, settings.profile, settings.description, settings.url) == (
        "a",
        "b",
        "c",
        "d",
    )


def test_key_choice_of_a_higher_layer_replaces_the_other(tmp_path: Path) -> None:
    project(tmp_path, '[tool.kmssign]\nkey-file = "dev.pem"\n')
    settings = load_settings(cwd=tmp_path, env={}, overrides={"key_id": "alias/ci"})
    assert (settings.key_id, settings.key_file) == ("alias/ci", None)
    settings = load_settings(cwd=tmp_path, env={"KMSSIGN_KEY_ID": "alias/env"})
    assert (settings.key_id, settings.key_file) == ("alias/env", None)
    project(tmp_path, '[tool.kmssign]\nkey-id = "alias/ci"\n')
    settings = load_settings(cwd=tmp_path, env={}, overrides={"key_file": "local.pem"})
    assert (settings.key_id, settings.key_file) == (None, tmp_path / "local.pem")


@pytest.mark.posix  # /abs/root.pem is absolute
def test_environment_parsing(tmp_path: Path) -> None:
    env = {
        "KMSSIGN_TIMESTAMP_URLS": "http://a.example, https://b.example/tsa ,",
        "KMSSIGN_INCLUDE": "*.exe,*.pyd",
        "KMSSIGN_EXCLUDE": "build/*",
        "KMSSIGN_CHAIN": "int.pem,/abs/root.pem",
        "KMSSIGN_SKIP_SIGNED": "No",
        "KMSSIGN_JOBS": "12",
        "KMSSIGN_TIMESTAMP": "OFF",
        "KMSSIGN_PROFILE": "",  # empty means unset, e.g. a missing CI secret
    }
    settings = load_settings(cwd=tmp_path, env=env, config=project(tmp_path, ""))
    assert settings.timestamp_urls == ("http://a.example", "https://b.example/tsa")
    assert settings.include == ("*.exe", "*.pyd")
    assert settings.exclude == ("build/*",)
    assert settings.chain == (tmp_path / "int.pem", Path("/abs/root.pem"))
    assert settings.skip_signed is False
    assert settings.jobs == 12
    assert settings.timestamp == "off"
    assert settings.profile is None


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("KMSSIGN_TIMESTAMP_URL", "KMSSIGN_TIMESTAMP_URLS"),
        ("KMSSIGN_KEYID", "KMSSIGN_KEY_ID"),
        ("KMSSIGN_CERT", "KMSSIGN_CERTIFICATE"),  # the flag's short name
        ("KMSSIGN_DISABLED", "KMSSIGN_DISABLE"),  # not a setting, but read
        ("KMSSIGN_PKCS11_PIN_FIL", "KMSSIGN_PKCS11_PIN_FILE"),
    ],
)
def test_a_misspelled_variable_is_an_error_naming_the_right_one(
    tmp_path: Path, name: str, meant: str
) -> None:
    """Set as it is, it would be ignored without a word (the timestamp servers of
    KMSSIGN_TIMESTAMP_URL replaced by the defaults, say)."""
    env = {name: "http://tsa.example", "KMSSIGN_KEY_ID": "alias/ci"}
    with pytest.raises(ConfigError) as caught:
        load_settings(cwd=tmp_path, env=env, config=project(tmp_path, ""))
    assert f"{name} is not a kmssign variable (did you mean {meant}?)" in str(caught.value)


def test_other_kmssign_variables_pass(tmp_path: Path) -> None:
    """A signer package's own variables, the secrets and an empty variable are not
    settings, and not mistaken for misspelled ones."""
    env = {
        "KMSSIGN_ACME_TOKEN": "x", "KMSSIGN_VAULT_URL": "https://vault.example",
        "KMSSIGN_PKCS11_PIN": "1234", "KMSSIGN_KEY_PASSWORD": "pw",
        "KMSSIGN_ACTION_PACKAGES": "acme-signer", "KMSSIGN_KEYID": "",
    }
    settings = load_settings(cwd=tmp_path, env=env, config=project(tmp_path, ""))
    assert settings == Settings(source=tmp_path / "pyproject.toml")


def test_every_variable_kmssign_reads_is_known_to_the_spelling_check() -> None:
    """A KMSSIGN_ variable named in a string anywhere in kmssign is a setting's or in
    OTHER_VARIABLES: otherwise setting it would be refused as a misspelling."""
    import re

    import kmssign
    from kmssign import config
    from kmssign._internal import spelling

    known = {config.ENV_PREFIX + k.upper().replace("-", "_") for k in config.KEYS}
    known.update(spelling.OTHER_VARIABLES)
    root = Path(kmssign.__file__).parent
    quoted = re.compile(r"[\"'](KMSSIGN_[A-Z0-9_]*[A-Z0-9])[\"']")
    read = {
        name
        for path in root.rglob("*.py")
        if path != root / "_internal" / "spelling.py"  # the list itself
        for name in quoted.findall(path.read_text(encoding="utf-8"))
    }
    assert read, "no KMSSIGN_ variable found in the sources"
    assert read <= known, sorted(read - known)


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_environment_booleans(tmp_path: Path, text: str, value: bool) -> None:
    config = project(tmp_path, "")
    settings = load_settings(cwd=tmp_path, env={"KMSSIGN_SKIP_SIGNED": text}, config=config)
    assert settings.skip_signed is value


def test_environment_uses_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KMSSIGN_REGION", "from-os-environ")
    assert load_settings(config=project(tmp_path, "")).region == "from-os-environ"


# -- paths -------------------------------------------------------------------------------------


def test_paths_relative_to_their_source(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    project(root, '[tool.kmssign]\ncertificate = "certs/leaf.pem"\nchain = "certs/chain.pem"\n')
    cwd = root / "src" / "pkg"
    cwd.mkdir(parents=True)
    settings = load_settings(cwd=cwd, env={})
    assert settings.certificate == root / "certs/leaf.pem"
    assert settings.chain == (root / "certs/chain.pem",)

    settings = load_settings(cwd=cwd, env={"KMSSIGN_CERTIFICATE": "env.pem"})
    assert settings.certificate == cwd / "env.pem"
    settings = load_settings(
        cwd=cwd,
        env={},
        overrides={"certificate": Path("cli.pem"), "chain": ["a.pem", Path("b.pem")]},
    )
    assert settings.certificate == cwd / "cli.pem"
    assert settings.chain == (cwd / "a.pem", cwd / "b.pem")
    settings = load_settings(cwd=cwd, env={}, table={"key-file": "keys/dev.pem"})
    assert settings.key_file == root / "keys/dev.pem"


def test_explicit_config_file_and_directory(tmp_path: Path) -> None:
    other = project(
        tmp_path / "other",
        '[tool.kmssign]\nregion = "other"\nkey-file = "k.pem"\n',
        name="signing.toml",
    )
    project(tmp_path, '[tool.kmssign]\nregion = "nearest"\n')
    settings = load_settings(cwd=tmp_path, env={}, config=other)
    assert (settings.region, settings.source) == ("other", other)
    assert settings.key_file == tmp_path / "other" / "k.pem"
    directory = project(tmp_path / "dir", '[tool.kmssign]\nregion = "dir"\n').parent
    assert load_settings(cwd=tmp_path, env={}, config=directory).region == "dir"
    relative = load_settings(cwd=tmp_path, env={}, config=Path("other/signing.toml"))
    assert relative.region == "other"


@pytest.mark.posix  # HOME (Windows expands ~ from USERPROFILE)
def test_home_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    settings = load_settings(
        cwd=tmp_path, env={"KMSSIGN_CERTIFICATE": "~/leaf.pem"}, config=project(tmp_path, "")
    )
    assert settings.certificate == tmp_path / "home" / "leaf.pem"


# -- validation --------------------------------------------------------------------------------


def test_every_problem_at_once(tmp_path: Path) -> None:
    project(
        tmp_path,
        """
[tool.kmssign]
colour = "blue"
jobs = "x"
digest = "md5"
timestamp = "maybe"
skip-signed = "yes"
chain = 5
timestamp-urls = ["ftp://tsa.example", "http://ok.example"]
endpoint-url = "localhost:4566"
key-id = "alias/x"
key-file = "key.pem"
region = 3
description = ""
""",
    )
    found = problems(
        cwd=tmp_path,
        table={"jobs": 0, "color": 1},
        table_name="tool.hatch.build.targets.wheel.hooks.kmssign",
        env={
            "KMSSIGN_DIGEST": "md5",
            "KMSSIGN_SKIP_SIGNED": "perhaps",
            "KMSSIGN_JOBS": "-2",
            "KMSSIGN_KEY_ID": "a",
            "KMSSIGN_KEY_FILE": "b",
        },
        overrides={"jobs": 0, "key_id": "c", "key_file": "d", "colour": "red"},
    )
    assert set(found) == {
        "tool.kmssign.colour is not a known setting",
        "tool.kmssign.jobs must be an integer >= 1, not 'x'",
        "tool.kmssign.digest must be one of sha256, sha384, sha512, not 'md5'",
        "tool.kmssign.timestamp must be one of required, optional, off, not 'maybe'",
        "tool.kmssign.skip-signed must be true or false, not 'yes'",
        "tool.kmssign.chain must be a path or a list of paths, not 5",
        "tool.kmssign.timestamp-urls must contain http:// or https:// URLs, not 'ftp://tsa.example'",
        "tool.kmssign.endpoint-url must be an http:// or https:// URL, not 'localhost:4566'",
        "tool.kmssign.region must be a string, not 3",
        "tool.kmssign.description must not be empty",
        "tool.kmssign: key-id and key-file are mutually exclusive",
        "tool.hatch.build.targets.wheel.hooks.kmssign.jobs must be an integer >= 1, not 0",
        "tool.hatch.build.targets.wheel.hooks.kmssign.color is not a known setting",
        "KMSSIGN_KEY_ID and KMSSIGN_KEY_FILE are mutually exclusive",
        "KMSSIGN_DIGEST must be one of sha256, sha384, sha512, not 'md5'",
        "KMSSIGN_SKIP_SIGNED must be one of true, false, 1, 0, yes, no, not 'perhaps'",
        "KMSSIGN_JOBS must be an integer >= 1, not '-2'",
        "--jobs must be an integer >= 1, not 0",
        "override colour is not a known setting",
        "--key-id and --key-file are mutually exclusive",
    }
    assert len(found) == 20
    # file problems come before table, env and command-line problems
    assert (
        found.index("tool.kmssign.colour is not a known setting")
        < found.index("KMSSIGN_JOBS must be an integer >= 1, not '-2'")
        < found.index("--jobs must be an integer >= 1, not 0")
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("true", "tool.kmssign.jobs must be an integer >= 1, not True"),
        ("1.5", "tool.kmssign.jobs must be an integer >= 1, not 1.5"),
        ("-1", "tool.kmssign.jobs must be an integer >= 1, not -1"),
        ('"4"', "tool.kmssign.jobs must be an integer >= 1, not '4'"),
    ],
)
def test_jobs_type(tmp_path: Path, value: str, message: str) -> None:
    project(tmp_path, f"[tool.kmssign]\njobs = {value}\n")
    assert problems(cwd=tmp_path) == [message]


def test_timeouts_in_seconds(tmp_path: Path) -> None:
    project(tmp_path, "[tool.kmssign]\ntimestamp-timeout = 0\nkms-timeout = true\n")
    env = {"KMSSIGN_TIMESTAMP_TIMEOUT": "nan", "KMSSIGN_KMS_TIMEOUT": "soon"}
    assert problems(cwd=tmp_path, env=env, overrides={"kms_timeout": -1.0}) == [
        "tool.kmssign.timestamp-timeout must be a number of seconds > 0, not 0",
        "tool.kmssign.kms-timeout must be a number of seconds > 0, not True",
        "KMSSIGN_TIMESTAMP_TIMEOUT must be a number of seconds > 0, not 'nan'",
        "KMSSIGN_KMS_TIMEOUT must be a number of seconds > 0, not 'soon'",
        "--kms-timeout must be a number of seconds > 0, not -1.0",
    ]
    env = {"KMSSIGN_TIMESTAMP_TIMEOUT": " 1.5 ", "KMSSIGN_KMS_TIMEOUT": "90"}
    project(tmp_path, "")
    settings = load_settings(cwd=tmp_path, env=env, overrides={"timestamp_timeout": 3})
    assert (settings.timestamp_timeout, settings.kms_timeout) == (3.0, 90.0)
    assert Settings().timestamp_timeout == 10.0 and Settings().kms_timeout == 60.0


def test_invalid_toml(tmp_path: Path) -> None:
    path = project(tmp_path, "[tool.kmssign\nregion = 1\n")
    found = problems(cwd=tmp_path, env={"KMSSIGN_JOBS": "zero"})
    assert len(found) == 2
    assert found[0].startswith(f"{path}: invalid TOML: ")
    assert found[1] == "KMSSIGN_JOBS must be an integer >= 1, not 'zero'"


def test_table_must_be_a_table(tmp_path: Path) -> None:
    project(tmp_path, "[tool]\nkmssign = 5\n")
    assert problems(cwd=tmp_path) == ["tool.kmssign must be a table"]


def test_missing_config_file(tmp_path: Path) -> None:
    assert problems(cwd=tmp_path, config=Path("nope.toml")) == [
        f"{tmp_path / 'nope.toml'}: config file not found"
    ]


def test_timestamp_required_needs_urls(tmp_path: Path) -> None:
    project(tmp_path, "[tool.kmssign]\ntimestamp-urls = []\n")
    assert problems(cwd=tmp_path) == ["timestamp-urls is empty but timestamp is 'required'"]
    settings = load_settings(cwd=tmp_path, env={"KMSSIGN_TIMESTAMP": "off"})
    assert (settings.timestamp, settings.timestamp_urls) == ("off", ())


def test_config_error_message_joins_problems(tmp_path: Path) -> None:
    project(tmp_path, '[tool.kmssign]\ncolour = 1\ndigest = "md5"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(cwd=tmp_path, env={})
    assert str(info.value) == (
        "tool.kmssign.colour is not a known setting; "
        "tool.kmssign.digest must be one of sha256, sha384, sha512, not 'md5'"
    )


def test_settings_is_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.jobs = 3  # type: ignore[misc]
