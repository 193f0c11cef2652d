"""ModelSpec: the architecture facts the memory terms need, read from a config.json.

Parameter counts are not looked up: they are summed from the tensors each architecture creates, so
they equal, exactly, what transformers builds from the same config (tests/planner/test_param_counts.py
builds every catalogue entry on the meta device and compares).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any

from planner.errors import PlannerError

CATALOGUE_DIR = Path(__file__).parent / "catalogue"

# model_type -> family; families share a tensor layout.
_FAMILIES = {
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "llama",
    "qwen3": "llama",
    "mixtral": "llama",
    "qwen3_moe": "llama",
    "gemma2": "llama",
    "phi3": "llama",
    "gpt2": "gpt2",
    "opt": "opt",
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_FAMILIES))


@dataclass(frozen=True)
class Tensor:
    """One kind of parameter tensor, `count` times in the model (e.g. one q_proj per layer).

    kind: embedding | position | lm_head | linear | expert | router | norm | bias.
    For linear and expert tensors, `in_features`/`out_features` give the matrix (LoRA needs them).
    """

    name: str
    kind: str
    numel: int
    count: int = 1
    in_features: int = 0
    out_features: int = 0

    @property
    def total(self) -> int:
        return self.numel * self.count


@dataclass(frozen=True)
class ModelSpec:
    id: str
    model_type: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int = 0
    num_experts: int = 0
    experts_per_token: int = 0
    expert_intermediate_size: int = 0
    config: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    # --- derived facts --------------------------------------------------------------------------

    @property
    def family(self) -> str:
        return _FAMILIES[self.model_type]

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def short_name(self) -> str:
        return self.id.split("/")[-1]

    def tensors(self) -> tuple[Tensor, ...]:
        """Every parameter tensor of the CausalLM model, grouped by kind."""
        return self._tensors

    @cached_property
    def _tensors(self) -> tuple[Tensor, ...]:
        # cached_property writes the instance __dict__ directly, which a frozen dataclass allows.
        if self.family == "gpt2":
            return tuple(_gpt2_tensors(self))
        if self.family == "opt":
            return tuple(_opt_tensors(self))
        return tuple(_decoder_tensors(self))

    @cached_property
    def params_total(self) -> int:
        return sum(t.total for t in self.tensors())

    def params_by_kind(self) -> dict[str, int]:
        return dict(self._params_by_kind)

    @cached_property
    def _params_by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tensors():
            out[t.kind] = out.get(t.kind, 0) + t.total
        return out

    @property
    def lm_head_params(self) -> int:
        """Parameters that only the LM head owns (0 when tied to the embedding)."""
        return self.params_by_kind().get("lm_head", 0)

    @property
    def params_active(self) -> int:
        """Parameters used per token (MoE: only experts_per_token of num_experts)."""
        if not self.is_moe:
            return self.params_total
        expert = self.params_by_kind().get("expert", 0)
        return self.params_total - expert + expert * self.experts_per_token // self.num_experts

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_type": self.model_type,
            "params_total": self.params_total,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "vocab_size": self.vocab_size,
            "tie_word_embeddings": self.tie_word_embeddings,
            "num_experts": self.num_experts,
            "experts_per_token": self.experts_per_token,
        }


# --- tensor layouts --------------------------------------------------------------------------------


def _linear(name: str, in_f: int, out_f: int, count: int, kind: str = "linear") -> Tensor:
    return Tensor(name, kind, in_f * out_f, count, in_f, out_f)


def _decoder_tensors(m: ModelSpec) -> list[Tensor]:
    """Llama-style decoders: Llama, Mistral, Mixtral, Qwen2/2.5, Qwen3 (+MoE), Gemma-2, Phi-3/4."""
    c, h, L = m.config, m.hidden_size, m.num_layers
    mt = m.model_type
    out = [Tensor("embed_tokens", "embedding", m.vocab_size * h)]
    if mt == "phi3":  # fused projections
        out.append(_linear("qkv_proj", h, m.q_dim + 2 * m.kv_dim, L))
    else:
        out += [_linear("q_proj", h, m.q_dim, L), _linear("k_proj", h, m.kv_dim, L), _linear("v_proj", h, m.kv_dim, L)]
    out.append(_linear("o_proj", m.q_dim, h, L))
    qkv_bias = mt == "qwen2" or bool(c.get("attention_bias", False))
    if qkv_bias:
        out.append(Tensor("qkv_bias", "bias", m.q_dim + 2 * m.kv_dim, L))
    if c.get("attention_bias", False) and mt != "qwen2":
        out.append(Tensor("o_proj_bias", "bias", h, L))
    if mt in ("qwen3", "qwen3_moe"):
        out.append(Tensor("qk_norm", "norm", 2 * m.head_dim, L))
    if m.is_moe:
        ei = m.expert_intermediate_size
        out.append(_linear("router", h, m.num_experts, L, kind="router"))
        out.append(_linear("expert_gate_up", h, 2 * ei, L * m.num_experts, kind="expert"))
        out.append(_linear("expert_down", ei, h, L * m.num_experts, kind="expert"))
    elif mt == "phi3":
        out += [_linear("gate_up_proj", h, 2 * m.intermediate_size, L), _linear("down_proj", m.intermediate_size, h, L)]
    else:
        i = m.intermediate_size
        out += [_linear("gate_proj", h, i, L), _linear("up_proj", h, i, L), _linear("down_proj", i, h, L)]
        if c.get("mlp_bias", False):
            out.append(Tensor("mlp_bias", "bias", 2 * i + h, L))
    norms_per_layer = 4 if mt == "gemma2" else 2
    out.append(Tensor("layer_norms", "norm", norms_per_layer * h, L))
    out.append(Tensor("final_norm", "norm", h))
    if not m.tie_word_embeddings:
        out.append(_linear("lm_head", h, m.vocab_size, 1, kind="lm_head"))
    return out


def _gpt2_tensors(m: ModelSpec) -> list[Tensor]:
    h, L, i = m.hidden_size, m.num_layers, m.intermediate_size
    return [
        Tensor("wte", "embedding", m.vocab_size * h),
        Tensor("wpe", "position", m.max_position_embeddings * h),
        _linear("c_attn", h, 3 * h, L),
        _linear("attn_c_proj", h, h, L),
        _linear("c_fc", h, i, L),
        _linear("mlp_c_proj", i, h, L),
        Tensor("biases", "bias", 3 * h + h + i + h, L),
        Tensor("layer_norms", "norm", 4 * h, L),
        Tensor("ln_f", "norm", 2 * h),
    ]


def _opt_tensors(m: ModelSpec) -> list[Tensor]:
    c, h, L, i = m.config, m.hidden_size, m.num_layers, m.intermediate_size
    proj = c.get("word_embed_proj_dim", h)
    out = [
        Tensor("embed_tokens", "embedding", m.vocab_size * proj),
        # OPT offsets learned positions by 2 (a fairseq legacy).
        Tensor("embed_positions", "position", (m.max_position_embeddings + 2) * h),
        _linear("q_proj", h, h, L),
        _linear("k_proj", h, h, L),
        _linear("v_proj", h, h, L),
        _linear("out_proj", h, h, L),
        _linear("fc1", h, i, L),
        _linear("fc2", i, h, L),
        Tensor("biases", "bias", 4 * h + i + h, L),
    ]
    affine = c.get("layer_norm_elementwise_affine", True)
    if affine:
        out.append(Tensor("layer_norms", "norm", 4 * h, L))
    if c.get("do_layer_norm_before", True) and not c.get("_remove_final_layer_norm", False) and affine:
        out.append(Tensor("final_layer_norm", "norm", 2 * h))
    if proj != h:
        out += [_linear("project_in", proj, h, 1), _linear("project_out", h, proj, 1)]
    if not c.get("tie_word_embeddings", True):
        out.append(_linear("lm_head", proj, m.vocab_size, 1, kind="lm_head"))
    return out


# --- reading configs -------------------------------------------------------------------------------


# Sizes in a config.json beyond this are not a model (2^31: no tensor dimension of a real model comes near).
MAX_CONFIG_INT = 2**31


def _require(cfg: dict, key: str, source: str) -> Any:
    if key not in cfg or cfg[key] is None:
        raise PlannerError("model", f"{source}: config.json has no '{key}'")
    return _positive_int(cfg, key, source)


def _positive_int(cfg: dict, key: str, source: str) -> int:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_CONFIG_INT:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise PlannerError("model", f"{source}: config.json '{key}' must be a positive integer up to "
                                    f"{MAX_CONFIG_INT:,}, got {shown}")
    return value


def _optional_int(cfg: dict, key: str, source: str) -> int | None:
    return None if cfg.get(key) is None else _positive_int(cfg, key, source)


def _check_heads(spec: ModelSpec, source: str) -> ModelSpec:
    """Shapes transformers itself would reject (or silently mis-build) are errors here too."""
    if "head_dim" not in spec.config and spec.hidden_size % spec.num_heads:
        raise PlannerError("model", f"{source}: hidden size {spec.hidden_size} is not divisible by "
                                    f"{spec.num_heads} attention heads")
    if spec.num_experts and spec.experts_per_token > spec.num_experts:
        raise PlannerError("model", f"{source}: config.json routes each token to {spec.experts_per_token} experts "
                                    f"of {spec.num_experts}; accepted: at most num_experts")
    if spec.num_heads % spec.num_kv_heads:
        raise PlannerError("model", f"{source}: {spec.num_heads} attention heads are not divisible by "
                                    f"{spec.num_kv_heads} key/value heads")
    return spec


def spec_from_config(cfg: dict[str, Any], model_id: str = "custom") -> ModelSpec:
    """Build a ModelSpec from the fields of a transformers config.json."""
    if not isinstance(cfg, dict):
        raise PlannerError("model", "a config must be a JSON object")
    mt = cfg.get("model_type")
    if not isinstance(mt, str) or mt not in _FAMILIES:
        raise PlannerError(
            "model", f"{model_id}: model_type {mt!r} is not supported; accepted: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    src = model_id
    if mt == "gpt2":
        h = _require(cfg, "n_embd", src)
        heads = _require(cfg, "n_head", src)
        return _check_heads(ModelSpec(
            id=model_id, model_type=mt, hidden_size=h, num_layers=_require(cfg, "n_layer", src),
            num_heads=heads, num_kv_heads=heads, head_dim=h // heads,
            intermediate_size=_optional_int(cfg, "n_inner", src) or 4 * h, vocab_size=_require(cfg, "vocab_size", src),
            tie_word_embeddings=cfg.get("tie_word_embeddings", True),
            max_position_embeddings=_optional_int(cfg, "n_positions", src) or 1024, config=cfg,
        ), src)
    h = _require(cfg, "hidden_size", src)
    heads = _require(cfg, "num_attention_heads", src)
    if mt == "opt":
        return _check_heads(ModelSpec(
            id=model_id, model_type=mt, hidden_size=h, num_layers=_require(cfg, "num_hidden_layers", src),
            num_heads=heads, num_kv_heads=heads, head_dim=h // heads,
            intermediate_size=_require(cfg, "ffn_dim", src), vocab_size=_require(cfg, "vocab_size", src),
            tie_word_embeddings=cfg.get("tie_word_embeddings", True),
            max_position_embeddings=_optional_int(cfg, "max_position_embeddings", src) or 2048, config=cfg,
        ), src)
    # Gemma-2 ties by default; the others default to untied when the key is absent... except that
    # transformers' PretrainedConfig default is True. Each model's config class sets its own default.
    tie_default = {"gemma2": True, "qwen2": False, "qwen3": True, "mistral": False, "mixtral": False,
                   "llama": False, "phi3": False, "qwen3_moe": False}[mt]
    num_experts = _optional_int(cfg, "num_local_experts", src) or _optional_int(cfg, "num_experts", src) or 0
    if mt == "qwen3_moe" and cfg.get("mlp_only_layers"):
        raise PlannerError("model", f"{model_id}: qwen3_moe with dense mlp_only_layers is not supported")
    return _check_heads(ModelSpec(
        id=model_id,
        model_type=mt,
        hidden_size=h,
        num_layers=_require(cfg, "num_hidden_layers", src),
        num_heads=heads,
        num_kv_heads=_optional_int(cfg, "num_key_value_heads", src) or heads,
        head_dim=_optional_int(cfg, "head_dim", src) or h // heads,
        intermediate_size=_require(cfg, "intermediate_size", src),
        vocab_size=_require(cfg, "vocab_size", src),
        tie_word_embeddings=cfg.get("tie_word_embeddings", tie_default),
        max_position_embeddings=cfg.get("max_position_embeddings", 0),
        num_experts=num_experts,
        experts_per_token=_require(cfg, "num_experts_per_tok", src) if num_experts else 0,
        expert_intermediate_size=(_optional_int(cfg, "moe_intermediate_size", src) or cfg["intermediate_size"])
        if num_experts else 0,
        config=cfg,
    ), src)


@lru_cache(maxsize=1)
def _catalogue_files() -> dict[str, Path]:
    return {p.stem.replace("--", "/"): p for p in sorted(CATALOGUE_DIR.glob("*.json"))}


@cache
def _catalogue_spec(model_id: str) -> ModelSpec:
    path = _catalogue_files()[model_id]
    return spec_from_config(json.loads(path.read_text()), model_id)


def catalogue() -> list[ModelSpec]:
    """The built-in models, from the public config.json copies in planner/catalogue/."""
    return [_catalogue_spec(mid) for mid in _catalogue_files()]


def catalogue_ids() -> list[str]:
    return list(_catalogue_files())


def _alias_index() -> dict[str, str]:
    index = {}
    for mid in _catalogue_files():
        index[mid.lower()] = mid
        index[mid.split("/")[-1].lower()] = mid
    return index


def _load_json_file(path: Path) -> dict:
    """A config.json: a regular file of bounded size and nesting (planner.input_files)."""
    from planner.input_files import InputFileError, load_json_file

    try:
        return load_json_file(path, "model")
    except InputFileError as exc:
        raise PlannerError("model", str(exc).removeprefix("model: ")) from None


def load_model(model: str | dict | ModelSpec) -> ModelSpec:
    """A ModelSpec from a catalogue id or short name, a config.json path, a model directory,
    a config dict, or a hub id (fetched with huggingface_hub when the hub is reachable)."""
    if isinstance(model, ModelSpec):
        return model
    if isinstance(model, dict):
        return spec_from_config(model, model.get("_name_or_path") or "custom")
    if not isinstance(model, str) or not model.strip():
        raise PlannerError("model", "give a catalogue name, a config.json path, a model directory or a hub id")
    name = model.strip()
    hit = _alias_index().get(name.lower())
    if hit:
        return _catalogue_spec(hit)
    path = Path(name).expanduser()
    if path.is_dir():
        cfg_path = path / "config.json"
        if not cfg_path.is_file():
            raise PlannerError("model", f"{path}: directory has no config.json")
        return spec_from_config(_load_json_file(cfg_path), str(path))
    if path.is_file() or path.is_symlink() or path.exists():  # a FIFO or a link loop: refused by the reader
        return spec_from_config(_load_json_file(path), str(path))
    if name.endswith(".json") or name.startswith((".", "/", "~")):
        raise PlannerError("model", f"{name}: file not found")
    if name.count("/") == 1:
        return spec_from_config(_fetch_hub_config(name), name)
    raise PlannerError(
        "model",
        f"unknown model {name!r}: not in the catalogue (try `alignplan models`), not a local "
        "config.json or model directory, and not a hub id of the form org/name",
    )


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A quick TCP check, so an offline machine gets an answer now rather than after the hub
    client's five retries."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


#: What to do when a model's config.json cannot be read from the hub, in the CLI's words (the app
#: shows its own words instead: alignplan.errors.PAGE_WORDING).
CONFIG_FILE_HINT = "download its config.json elsewhere and pass the file (--model path/to/config.json)"


def _fetch_hub_config(repo_id: str) -> dict:
    local_hint = CONFIG_FILE_HINT
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - declared dependency
        raise PlannerError("model", f"huggingface_hub is not installed; {local_hint}") from None
    try:
        # A cached copy works offline.
        path = hf_hub_download(repo_id, "config.json", local_files_only=True)
    except Exception:
        path = None
    if path is None:
        if not _hub_reachable():
            raise PlannerError(
                "model", f"{repo_id!r} is not in the catalogue and the Hugging Face hub cannot be reached; {local_hint}"
            )
        try:
            path = hf_hub_download(repo_id, "config.json", etag_timeout=5)
        except Exception as exc:  # 404s, gated repos, network errors
            raise PlannerError(
                "model", f"could not fetch config.json for {repo_id!r} from the hub ({type(exc).__name__}); {local_hint}"
            ) from None
    return _load_json_file(Path(path))
