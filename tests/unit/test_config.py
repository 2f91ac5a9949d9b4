import pytest

from affalign.config import config_from_dict, load_config, parse_overrides
from affalign.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "job.yaml"
    p.write_text(text)
    return p


def test_defaults_and_yaml(tmp_path):
    cfg = load_config(write(tmp_path, "dataset: roe\ninput: {path: data/}\n"))
    assert cfg.dataset == "roe" and cfg.taxonomy_ref == "roe"
    assert cfg.min_texts_per_group == 1000
    assert cfg.input.group_column == "party"
    assert cfg.scoring.emotion.scorer == "offline"
    assert cfg.reduce.mode == "mean"


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(
        write(tmp_path, "input: {path: a}\n"),
        ["input.path=s3://b/x", "min_texts_per_group=5", "scoring.emotion.scorer=lexicon", "input.groups=[a, b, c]", "reduce.tau=0.3"],
    )
    assert cfg.input.path == "s3://b/x"
    assert cfg.min_texts_per_group == 5
    assert cfg.scoring.emotion.scorer == "lexicon"
    assert cfg.input.groups == ["a", "b", "c"]
    assert cfg.reduce.tau == 0.3


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"input\.pth"):
        load_config(write(tmp_path, "input: {pth: a}\n"))
    with pytest.raises(ConfigError, match=r"scoring\.emotion\.bogus"):
        load_config(write(tmp_path, "input: {path: a}\n"), ["scoring.emotion.bogus=1"])
    with pytest.raises(ConfigError, match="job.yaml"):
        load_config(write(tmp_path, "nonsense_key: 1\n"))


@pytest.mark.parametrize(
    "override, key",
    [
        ("min_texts_per_group=abc", "min_texts_per_group"),
        ("min_texts_per_group=0", "min_texts_per_group"),
        ("reduce.mode=median", "reduce.mode"),
        ("reduce.tau=2", "reduce.tau"),
        ("input.format=xml", "input.format"),
        ("input.drop_retweets=maybe", "input.drop_retweets"),
        ("scoring.dimensions=[emotion, vibes]", "scoring.dimensions"),
        ("generation.modes=[default, centrist]", "generation.modes"),
    ],
)
def test_bad_values_are_refused_with_the_key(tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(write(tmp_path, "input: {path: a}\n"), [override])


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(write(tmp_path, "input: [unclosed\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["novalue"])


def test_hash_is_stable_and_sensitive():
    a = config_from_dict({"input": {"path": "x"}})
    b = config_from_dict({"input": {"path": "x"}})
    c = config_from_dict({"input": {"path": "y"}})
    assert a.hash() == b.hash() != c.hash()


def test_shipped_jobs_load():
    for name in ("demo", "covid", "roe"):
        cfg = load_config(f"jobs/{name}.yaml")
        assert cfg.dataset in ("covid", "roe")


def test_an_option_no_scorer_or_backend_reads_is_an_error_naming_it():
    """Scorer and model options are declared by the class that reads them; a typo used to be ignored."""
    from affalign.config import config_from_dict

    base = {"name": "x", "dataset": "covid", "input": {"path": "x"}}
    with pytest.raises(ConfigError, match=r"scoring.emotion.options: unknown option 'encodr' \(known: encoder, heads\)"):
        config_from_dict({**base, "scoring": {"emotion": {"scorer": "offline", "options": {"encodr": "fast"}}}})
    with pytest.raises(ConfigError, match=r"model smollm2-135m-instruct.options: unknown option 'devcie'"):
        config_from_dict({**base, "generation": {"enabled": True, "models": [{"name": "smollm2-135m-instruct", "options": {"devcie": "cpu"}}]}})
    with pytest.raises(ConfigError, match=r"unknown option 'device'"):  # an OpenAI model has no device
        config_from_dict({**base, "generation": {"enabled": True, "models": [{"id": "gpt-x", "backend": "openai", "options": {"device": "cuda"}}]}})
    # a judge passes its backend's options through; job-level model options are known to every backend
    cfg = config_from_dict(
        {
            **base,
            "scoring": {"emotion": {"scorer": "judge", "model": "gpt-x", "options": {"base_url": "http://x", "max_attempts": 2}}},
            "generation": {"enabled": True, "models": [{"name": "smollm2-135m-instruct", "options": {"device": "cpu", "max_replicas": 2, "allow_cpu": True}}]},
        }
    )
    assert cfg.generation.model_specs()[0].options["max_replicas"] == 2


def test_an_option_value_of_the_wrong_type_is_an_error_naming_it():
    """Option values used to be converted where they were read: `seq2seq: "false"` read as true,
    `top_k: "5"` failed inside a GPU actor. Each plugin now declares the type of each option."""
    from affalign.config import config_from_dict
    from affalign.registry import check_options

    base = {"name": "x", "dataset": "covid", "input": {"path": "x"}, "generation": {"enabled": True}}

    def model(options):
        return config_from_dict({**base, "generation": {"enabled": True, "models": [{"name": "smollm2-135m-instruct", "options": options}]}})

    with pytest.raises(ConfigError, match=r"smollm2-135m-instruct.options.static_cache: expected true or false, got 'false'"):
        model({"static_cache": "false"})
    with pytest.raises(ConfigError, match=r"options.top_k: expected an integer, got '5'"):
        model({"top_k": "5"})
    with pytest.raises(ConfigError, match=r"options.max_replicas: expected an integer, got True"):  # a bool is not a count
        model({"max_replicas": True})
    with pytest.raises(ConfigError, match=r"scoring.moral.options.five_foundations: expected true or false, got 1"):
        config_from_dict({**base, "scoring": {"moral": {"scorer": "hf", "model": "a/b", "options": {"five_foundations": 1}}}})
    # the label-map check's switch (documented in the README) passes the config
    cfg = config_from_dict({**base, "scoring": {"moral": {"scorer": "hf", "model": "a/b", "options": {"label_map_check": False}}}})
    assert cfg.scoring.moral.options == {"label_map_check": False}
    # accepted: an int where a number is wanted, either type of a union, null (the default)
    cfg = model({"gpus_per_replica": 1, "device_map": {"": 0}, "top_k": None})
    assert cfg.generation.model_specs()[0].options["gpus_per_replica"] == 1
    check_options({"anything": [1]}, frozenset({"anything"}), "plugin")  # names without types (older plugins): any value
