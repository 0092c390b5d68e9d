"""``vigil logs analyze``: a diagnosis of a log file, deterministic first, an LLM on top.

Stages, one module each: ``classify`` (which analysis type fits the content), ``windows``
(records collapsed by template into sliding windows counted in ``tokens``),
``template_stats`` (each template counted and rated), ``findings`` (error templates, bursts
and rare templates from the template and anomaly analysis, with the ``remedies`` that fit),
``prompts`` and ``llm`` (one prompt per type; OpenAI-compatible, OpenAI and Anthropic
providers; the answer checked against the window), ``merge`` (LLM findings folded into the
deterministic ones), ``llm_pass`` (the windows worth sending, and the answers folded into each
file), ``pipeline`` (files in parallel) and ``render`` (text, CSV, the HTML report's data).
The JSON document is ``contracts.log_analysis``.
"""
