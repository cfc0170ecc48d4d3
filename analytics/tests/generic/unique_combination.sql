{#- No two rows share the same values in `columns`: the grain of a model that has no single key
    (what dbt_utils.unique_combination_of_columns does; dbt packages cannot be installed here). -#}
{% test unique_combination(model, columns) %}
select
    {% for column in columns %}{{ adapter.quote(column) }}, {% endfor %}count(*) as rows_with_this_key
from {{ model }}
group by {% for column in columns %}{{ adapter.quote(column) }}{% if not loop.last %}, {% endif %}{% endfor %}
having count(*) > 1
{% endtest %}
