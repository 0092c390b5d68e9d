{{- /*
Generated from serving/router/templates/ab_routes.conf.j2 (vigil serving router
--write-chart-routes): the routes the local router serves too. Do not edit;
tests/ops/test_chart.py fails on drift.
*/}}
{{- define "vigil.abRoutes" -}}
# The A/B inference route (POST only): rewritten to the model of the request's arm.
location = /v2/models/anomaly/infer {
    limit_except POST {
        deny all;
    }
    add_header X-Vigil-Arm $vigil_arm always;
    add_header X-Vigil-Model $vigil_model always;
    rewrite ^ /v2/models/$vigil_model/infer break;
    proxy_pass http://triton;
}

# The A/B model's metadata (GET only): the inputs and their shape.
location = /v2/models/anomaly {
    limit_except GET {
        deny all;
    }
    add_header X-Vigil-Arm $vigil_arm always;
    add_header X-Vigil-Model $vigil_model always;
    rewrite ^ /v2/models/$vigil_model break;
    proxy_pass http://triton;
}

# Triton's health, for probes and clients (GET only, no rate limit).
location = /v2/health/ready {
    limit_except GET {
        deny all;
    }
    proxy_pass http://triton;
}

location = /v2/health/live {
    limit_except GET {
        deny all;
    }
    proxy_pass http://triton;
}

# Nothing else of Triton's API is exposed.
location / {
    return 404 '{"error":"not served here: only POST /v2/models/anomaly/infer, GET /v2/models/anomaly and /v2/health/{ready,live}"}\n';
}
{{- end }}

{{- define "vigil.abRoutePaths" -}}
- /v2/models/anomaly/infer
- /v2/models/anomaly
- /v2/health/ready
- /v2/health/live
{{- end }}
