"""What every registered trainer must state for itself: the lists of methods come from Dassl's registry, so a new
method file is picked up by these checks (and by the per-trainer coverage checks of the integration tests)."""
from __future__ import annotations

import pytest
from conftest import HAS_DASSL, ROOT

pytestmark = pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")


@pytest.fixture(scope="module")
def full_cfg():
    from dassl.config import get_cfg_default

    from trainers.engine.config import extend_cfg

    return extend_cfg(get_cfg_default(), ("trainers", "datasets"))


def test_the_registry_holds_every_method_file():
    """The package walk imports every file that registers a trainer (there is no list of them to forget)."""
    from trainers import registered_trainers

    registering = {f"trainers.{path.stem}" for path in (ROOT / "trainers").glob("*.py")
                   if "@TRAINER_REGISTRY.register()" in path.read_text()}
    assert len(registering) >= 8
    assert {cls.__module__ for cls in registered_trainers().values()} == registering


def test_every_trainer_names_its_own_config_node(full_cfg):
    """Every trainer names its own node: one inherited from another method would read that method's keys."""
    from trainers import registered_trainers
    from trainers.engine.trainer import CLIPTrainer

    for name, cls in registered_trainers().items():
        owner = next(klass for klass in cls.__mro__ if "CONFIG_NODE" in vars(klass))
        assert owner is not CLIPTrainer and cls.CONFIG_NODE, f"{name} names no CONFIG_NODE"
        assert cls.CONFIG_NODE in full_cfg.TRAINER, f"{name}: no add_config() declares TRAINER.{cls.CONFIG_NODE}"


def test_a_trainer_without_config_node_is_a_config_error(full_cfg):
    from trainers.engine.trainer import CLIPTrainer
    from trainers.errors import ConfigError

    class Nameless(CLIPTrainer):
        pass

    with pytest.raises(ConfigError, match=r"Nameless sets no CONFIG_NODE"):
        Nameless.check_cfg(object.__new__(Nameless), full_cfg.clone())


def test_a_config_node_that_no_add_config_declares_is_a_config_error(full_cfg):
    from trainers.engine.trainer import CLIPTrainer
    from trainers.errors import ConfigError

    class Undeclared(CLIPTrainer):
        CONFIG_NODE = "NOT_DECLARED"

    with pytest.raises(ConfigError, match=r"TRAINER\.NOT_DECLARED, which no add_config\(\) declares"):
        Undeclared.check_cfg(object.__new__(Undeclared), full_cfg.clone())
