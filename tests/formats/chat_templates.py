"""Chat templates for the template checks: copies of published ones, and sandbox escapes.

The benign templates follow the shape of the templates published with the
models (ChatML, Llama 2, Llama 3 / 3.1 tool use, Mistral, Gemma, Zephyr,
Phi-3, Qwen2.5 / Qwen3 tool calling); ``SYSTEM_PROMPT_WORDS`` puts words a
text search would take for an attack inside string literals. Each escape
takes a shell command and returns a template that runs it when rendered with
a plain ``jinja2.Environment`` (issue 15: each one bypassed the old regex or
reaches Python by a name Jinja computes at render time).
"""

from __future__ import annotations

from collections.abc import Callable

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)

LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

LLAMA31_TOOLS = """{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON." }}
    {{- "\\n\\n" }}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- if tools_in_user_message and not tools is none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}
{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
            {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

MISTRAL = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)

GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}"
    "{% endif %}{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"
)

ZEPHYR = (
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"
)

PHI3 = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
    "{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}"
    "{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\\n'}}{% endif %}{% endfor %}"
)

QWEN25_TOOLS = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n" }}
    {{- "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments" }}
    {{- " within <tool_call></tool_call> XML tags:\\n<tool_call>\\n" }}
    {{- "{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# Qwen3's reverse scan for the last user query: a computed index into messages.
QWEN3_LAST_QUERY = """{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and message.content is string and not(message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- set content = message.content if message.content is string else '' %}
    {%- if '</think>' in content %}
        {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
    {%- endif %}
    {%- if loop.index0 > ns.last_query_index %}
        {{- '<|im_start|>' + message.role + '\\n' + content }}
    {%- else %}
        {{- '<|im_start|>' + messages[index if index is defined else loop.index0].role + '\\n' + content }}
    {%- endif %}
    {{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""

# A ChatML template with a default system prompt full of words a text search flags.
SYSTEM_PROMPT_WORDS = (
    "{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nYou may exec code: import os; "
    "os.system(cmd), eval(x), obj.__class__.__mro__, __globals__, |attr, subprocess.popen.<|im_end|>\\n' }}"
    "{% endif %}" + CHATML
)

# A system prompt picked with the attribute-taking filters (selectattr, rejectattr, map(attribute=)), as
# Phi-3.5 / Granite-style templates do: these must stay approved once attribute names are judged (issue 15).
SELECTATTR_SYSTEM = (
    "{%- set system = messages|selectattr('role', 'equalto', 'system')|list -%}"
    "{%- if system %}<|system|>{{ system|map(attribute='content')|join('\\n') }}<|end|>{% endif -%}"
    "{%- for m in messages|rejectattr('role', 'equalto', 'system') %}<|{{ m.role }}|>{{ m.content }}<|end|>"
    "{% endfor -%}{{ messages|map(attribute='content')|join|length }}"
    "{%- if add_generation_prompt %}<|assistant|>{% endif %}"
)

BENIGN: dict[str, str] = {
    "chatml": CHATML,
    "llama2": LLAMA2,
    "llama3": LLAMA3,
    "llama3.1-tools": LLAMA31_TOOLS,
    "mistral": MISTRAL,
    "gemma": GEMMA,
    "zephyr": ZEPHYR,
    "phi3": PHI3,
    "qwen2.5-tools": QWEN25_TOOLS,
    "qwen3-last-query": QWEN3_LAST_QUERY,
    "system-prompt-words": SYSTEM_PROMPT_WORDS,
    "selectattr-system": SELECTATTR_SYSTEM,
}

# Templates that reach Python internals under a plain jinja2.Environment, read-only (issue 15 red team):
# a bound str.format obtained as a value, stored in a dict and called through an allowed method name
# (Jinja's getattr falls back to the item), walks {0.__class__.__mro__} and {1.__globals__[sys]...}.
_FORMAT_STRING = "['{0.__class__.__mro__} {1.__globals__[sys].modules[os].name}']"
READS: dict[str, str] = {
    "map(attribute='format') called as dict.strip": (
        "{% set f = " + _FORMAT_STRING + "|map(attribute='format')|first %}{% set d = {'strip': f} %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ d.strip(messages, raise_exception) }}"
    ),
    "groupby('format') grouper called as dict.join": (
        "{% set f = (" + _FORMAT_STRING + "|groupby('format')|first).grouper %}"
        "{{ {'join': f}.join(messages, raise_exception) }}"
    ),
}

_RUN = "popen({cmd!r}).read()"  # read() waits for the command


def _escape(template: str) -> Callable[[str], str]:
    return lambda cmd: template.replace("RUN", _RUN.format(cmd=cmd))


# Each reaches os through objects every Jinja environment has (jinja2.utils imports os).
ESCAPES: dict[str, Callable[[str], str]] = {
    "dunder attributes (CVE-2024-34359)": _escape("{{ self.__init__.__globals__.__builtins__.__import__('os').RUN }}"),
    "cycler.__init__.__globals__.os": _escape("{{ cycler.__init__.__globals__.os.RUN }}"),
    "lipsum.__globals__": _escape("{{ lipsum.__globals__['os'].RUN }}"),
    "concatenated item names": _escape(
        "{% for k in ''['__cla' ~ 'ss__']['__ba' ~ 'se__']['__subcla' ~ 'sses__']() %}"
        "{% if k['__na' ~ 'me__'] == '_wrap_close' %}"
        "{{ k['__in' ~ 'it__']['__glo' ~ 'bals__'].RUN }}{% endif %}{% endfor %}"
    ),
    "attr filter": _escape("{% set request = cycler %}{{ (request|attr('__init__')|attr('__globals__'))['os'].RUN }}"),
    "format filter": _escape("{{ lipsum['%s%s'|format('__glo', 'bals__')]['os'].RUN }}"),
    "join filter": _escape("{{ lipsum[['__glo', 'bals__']|join]['os'].RUN }}"),
    "map(attribute=)": _escape("{{ ([lipsum]|map(attribute='__globals__')|first)['os'].RUN }}"),
    "name set from a string": _escape("{% set k = '__glo' ~ 'bals__' %}{{ lipsum[k]['os'].RUN }}"),
    "percent formatting": _escape("{% set k = '__glo%cals__' % 98 %}{{ lipsum[k]['os'].RUN }}"),
    "namespace class": _escape("{{ namespace['__in' ~ 'it__']['__glo' ~ 'bals__']['os'].RUN }}"),
    "loop over strings": _escape("{% for k in ['__globals__'] %}{{ lipsum[k]['os'].RUN }}{% endfor %}"),
    "macro argument": _escape(
        "{% macro get(o, k) %}{{ o[k]['os'].RUN }}{% endmacro %}{{ get(lipsum, '__glo' ~ 'bals__') }}"
    ),
    "namespace attribute": _escape(
        "{% set ns = namespace(k=0) %}{% set ns.k = '__glo' ~ 'bals__' %}{{ lipsum[ns.k]['os'].RUN }}"
    ),
}
