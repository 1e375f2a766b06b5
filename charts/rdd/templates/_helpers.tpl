{{- define "rdd.labels" -}}
app.kubernetes.io/part-of: rdd
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "rdd.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}


{{- /* Non-empty when a mirror controller (container, image, volume) is enabled: they need the
docker-gateway DaemonSet. */}}
{{- define "rdd.gatewayNeeded" -}}
{{- range $name := list "container" "image" "volume" }}
{{- if index $.Values.controllers $name }}yes{{ end }}
{{- end }}
{{- end -}}
