{{/* Chart name, or nameOverride. */}}
{{- define "hookline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name that every resource name starts with. */}}
{{- define "hookline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the pods of one part; call with (dict "root" $ "part" "api"). */}}
{{- define "hookline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .part }}
{{- end -}}

{{/* Labels of every resource of one part; call like hookline.selectorLabels. */}}
{{- define "hookline.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: hookline
{{- end -}}

{{- define "hookline.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "hookline.secretName" -}}
{{- default (include "hookline.fullname" .) .Values.secret.name -}}
{{- end -}}

{{- define "hookline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Parts that run as Deployments, in a fixed order. */}}
{{- define "hookline.parts" -}}
{{- $parts := list "api" "creator" "dispatcher" -}}
{{- if .Values.gateway.enabled -}}
{{- $parts = append $parts "gateway" -}}
{{- end -}}
{{- toJson $parts -}}
{{- end -}}

{{/* Whether the creator's replicas follow Kafka lag through KEDA: "true" or "". */}}
{{- define "hookline.creatorAutoscaled" -}}
{{- if and .Values.keda.enabled .Values.creator.autoscaling.enabled .Values.kafka.brokers -}}
true
{{- end -}}
{{- end -}}

{{/* Whether the dispatcher's replicas follow the queue length through KEDA: "true" or "". */}}
{{- define "hookline.dispatcherAutoscaled" -}}
{{- if and .Values.keda.enabled .Values.dispatcher.autoscaling.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* Whether applications come from 3scale (config.directory.kind): "true" or "". */}}
{{- define "hookline.threescale" -}}
{{- if eq (dig "directory" "kind" "builtin" (default dict .Values.config)) "threescale" -}}
true
{{- end -}}
{{- end -}}

{{/* Base URL of the gateway Service, which dispatchers post attempts to. */}}
{{- define "hookline.gatewayUrl" -}}
{{- printf "http://%s-gateway.%s.svc:%v" (include "hookline.fullname" .) .Release.Namespace .Values.gateway.service.port -}}
{{- end -}}

{{/*
The configuration of every part: the values' `config` sections with the
keys that the chart owns laid over them, as a dictionary of TOML sections.
*/}}
{{- define "hookline.configSections" -}}
{{- $owned := dict
  "api" (dict "listen" (printf "0.0.0.0:%v" .Values.port))
  "storage" (dict "data_dir" "/var/lib/hookline/data")
  "queue" (dict "name" .Values.queue.name)
  "kafka" (dict "brokers" .Values.kafka.brokers "group_id" .Values.kafka.groupId)
  "shutdown" (dict "grace" (printf "%vs" .Values.shutdownGraceSeconds))
-}}
{{- if .Values.gateway.enabled -}}
{{- $_ := set $owned "gateway" (dict "listen" (printf "0.0.0.0:%v" .Values.gateway.listenPort)) -}}
{{- $_ := set $owned "dispatcher" (dict "gateway_url" (include "hookline.gatewayUrl" .)) -}}
{{- end -}}
{{- $sections := deepCopy (default dict .Values.config) -}}
{{- range $section, $keys := $owned -}}
{{- $merged := mergeOverwrite (deepCopy (default dict (get $sections $section))) $keys -}}
{{- $_ := set $sections $section $merged -}}
{{- end -}}
{{- toJson $sections -}}
{{- end -}}

{{/*
Renders the sections as TOML. Helm reads every YAML number as a float, so
whole numbers are written as TOML integers and the rest as floats.
*/}}
{{- define "hookline.configToml" -}}
{{- $sections := include "hookline.configSections" . | fromJson -}}
{{- $tables := list -}}
{{- range $section := keys $sections | sortAlpha -}}
{{- $keys := get $sections $section -}}
{{- if not (kindIs "map" $keys) -}}
{{- fail (printf "config.%s must be a section (a map of keys), not %v" $section $keys) -}}
{{- end -}}
{{- $lines := list (printf "[%s]" $section) -}}
{{- range $key := keys $keys | sortAlpha -}}
{{- $value := include "hookline.tomlValue" (dict "path" (printf "config.%s.%s" $section $key) "value" (get $keys $key)) -}}
{{- $lines = append $lines (printf "%s = %s" $key $value) -}}
{{- end -}}
{{- $tables = append $tables (join "\n" $lines) -}}
{{- end -}}
{{- join "\n\n" $tables -}}
{{- end -}}

{{- define "hookline.tomlValue" -}}
{{- $value := .value -}}
{{- if kindIs "string" $value -}}
{{- toJson $value -}}
{{- else if kindIs "bool" $value -}}
{{- $value -}}
{{- else if or (kindIs "float64" $value) (kindIs "int" $value) (kindIs "int64" $value) -}}
{{- if eq (float64 $value) (float64 (int64 $value)) -}}
{{- int64 $value -}}
{{- else -}}
{{- $value -}}
{{- end -}}
{{- else if kindIs "slice" $value -}}
{{- $path := .path -}}
[{{ range $index, $item := $value }}{{ if $index }}, {{ end }}{{ include "hookline.tomlValue" (dict "path" $path "value" $item) }}{{ end }}]
{{- else if kindIs "map" $value -}}
{{- /* An inline table, such as directory.services = { "order-created" = 42 }. */ -}}
{{- $path := .path -}}
{ {{- range $index, $key := keys $value | sortAlpha }}{{ if $index }},{{ end }} {{ toJson $key }} = {{ include "hookline.tomlValue" (dict "path" (printf "%s.%s" $path $key) "value" (get $value $key)) }}{{ end }} }
{{- else -}}
{{- fail (printf "%s: unsupported value %v; use a string, number, boolean, list or map" .path $value) -}}
{{- end -}}
{{- end -}}
