from __future__ import annotations

import pytest

from services.supply_chain.domain.lookalike import osa_distance, skeleton
from services.supply_chain.domain.policy import DEFAULT_TRUSTED_SOURCES
from services.supply_chain.domain.source import assess_source

pytestmark = pytest.mark.unit

# the segment-boundary rules are exercised with a path-scoped Hugging Face entry, as the control card writes it
TRUSTED = (*(s for s in DEFAULT_TRUSTED_SOURCES if s != "huggingface.co"), "huggingface.co/models",
           "registry.corp.example/models")


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/models/acme/resnet",
        "https://huggingface.co/models",
        "https://tfhub.dev/google/imagenet/1",
        "https://pytorch.org/hub/pytorch_vision_resnet",
        "https://models.ngc.nvidia.com/nvidia/tao",
        "https://HuggingFace.co:443/models/acme",
        "https://registry.corp.example/models/team/x",
    ],
)
def test_https_urls_under_a_trusted_host_and_path_prefix_are_trusted(url: str) -> None:
    found = assess_source(url, TRUSTED)
    assert found.trusted, (found.tricks, found.problems)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # IDN / punycode / confusable characters
        ("https://xn--hggingface-n9a.co/models/a", "punycode"),
        ("https://huggingfаce.co/models/a", "non-ASCII"),  # Cyrillic а
        ("https://ｈuggingface.co/models/a", "non-ASCII"),  # fullwidth h
        ("https://tfhυb.dev/a", "non-ASCII"),  # Greek upsilon
        # typosquats: omission, transposition, insertion, digit/letter swaps, TLD swap
        ("https://hugginface.co/models/a", "typosquat"),
        ("https://hugigngface.co/models/a", "typosquat"),
        ("https://hugggingface.co/models/a", "typosquat"),
        ("https://hugg1ngface.co/models/a", "confusable"),
        ("https://pyt0rch.org/hub/a", "confusable"),
        ("https://tfhub.dew/a", "typosquat"),
        ("https://huggingface.com/models/a", "typosquat"),
        # raw IP hosts in every notation
        ("https://185.199.108.153/models/a", "IP"),
        ("https://[2606:4700::1111]/models/a", "IPv6"),
        ("https://3115345049/models/a", "IP"),
        ("https://0xb9c76c99/models/a", "IP"),
        ("https://0271.0307.0154.0231/models/a", "IP"),
        ("https://185.13069465/a", "IP"),
        # userinfo and lookalike subdomains
        ("https://huggingface.co@evil.io/models/a", "userinfo"),
        ("https://huggingface.co:x@evil.io/models/a", "userinfo"),
        ("https://huggingface.co.evil.io/models/a", "embeds trusted name"),
        ("https://huggingface-co.evil.io/models/a", "embeds trusted name"),
        # ports, backslashes, encodings, dot segments
        ("https://huggingface.co:8443/models/a", "port"),
        ("https://huggingface.co\\@evil.io/models/a", "backslash"),
        ("https://huggingface.co/models/%2e%2e/evil", "percent-encoded"),
        ("https://huggingface%2eco/models/a", "percent-encoded"),
        ("https://huggingface.co/models/../evil", "dot segments"),
        ("https://huggingface.co/models/a\t", "control"),
        ("https://huggingface.co./models/a", "trailing dot"),
        ("https://tfhub.dev#@evil.io/x", "fragment"),
        ("https://tfhub.dev/x@evil.io", "'@' after the host"),
    ],
)
def test_deceptive_urls_are_rejected_as_tricks_naming_the_trick_class(url: str, expected: str) -> None:
    found = assess_source(url, TRUSTED)
    assert not found.trusted
    assert any(expected in t for t in found.tricks), found.tricks


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://huggingface.co/models/a", "not https"),
        ("ftp://huggingface.co/models/a", "not https"),
        ("https://huggingface.co/modelsX/a", "segment boundary"),
        ("https://huggingface.co/spaces/a", "segment boundary"),
        ("https://pytorch.org/hubble", "segment boundary"),
        ("https://cdn.huggingface.co/models/a", "subdomain"),
        ("https://example.org/models/a", "not on the allowlist"),
        ("https://evil.io/huggingface.co/models/a", "not on the allowlist"),
        ("https://modeis.ngc.nvidia.com/a", "shares the domain"),
    ],
)
def test_untrusted_but_plain_urls_are_rejected_as_policy_problems(url: str, expected: str) -> None:
    found = assess_source(url, TRUSTED)
    assert not found.trusted
    assert any(expected in p for p in found.problems), found.problems


def test_edit_distance_counts_an_adjacent_transposition_as_one_edit() -> None:
    assert osa_distance("huggingface", "hugigngface") == 1
    assert osa_distance("abc", "abc") == 0


def test_skeleton_folds_digits_cyrillic_and_rn_to_the_latin_lookalike() -> None:
    assert skeleton("рytоrch") == skeleton("pytorch")
    assert skeleton("hugg1ngface") == skeleton("huggingface")
    assert skeleton("rnodels") == skeleton("models")


def test_a_real_hugging_face_model_url_is_trusted_with_the_default_allowlist() -> None:
    found = assess_source("https://huggingface.co/acme/digits-classifier", DEFAULT_TRUSTED_SOURCES)
    assert found.trusted, found.problems
