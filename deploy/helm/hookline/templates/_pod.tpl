{{/*
Pod spec shared by the Deployments and the migration Job. Call with
(dict "root" $ "part" "api" "values" .Values.api "command" "api").
*/}}
{{- define "hookline.podSpec" -}}
{{- $root := .root -}}
{{- $values := .values -}}
{{- $serving := has .part (list "api" "gateway") -}}
{{- $isJob := eq .part "migrate" -}}
serviceAccountName: {{ include "hookline.serviceAccountName" $root }}
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- if $isJob }}
restartPolicy: Never
{{- else }}
{{- /* A serving part first waits for the Service to stop routing to it. */}}
terminationGracePeriodSeconds: {{ add (ternary 5 0 $serving) $root.Values.shutdownGraceSeconds 10 }}
{{- end }}
containers:
  - name: hookline
    image: {{ include "hookline.image" $root | quote }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    args: ["--config", "/etc/hookline/config/config.toml", {{ .command | quote }}]
    {{- if not $isJob }}
    ports:
      - name: http
        containerPort: {{ $root.Values.port }}
        protocol: TCP
      {{- if eq .part "gateway" }}
      - name: gateway
        containerPort: {{ $root.Values.gateway.listenPort }}
        protocol: TCP
      {{- end }}
    {{- end }}
    env:
      {{- include "hookline.secretEnv" $root | nindent 6 }}
      {{- with $values.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- if not $isJob }}
    startupProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 2
      failureThreshold: 60
    livenessProbe:
      httpGet:
        path: /healthz
        port: http
      periodSeconds: 10
      timeoutSeconds: 2
      failureThreshold: 3
    readinessProbe:
      httpGet:
        path: /readyz
        port: http
      periodSeconds: 5
      timeoutSeconds: 2
      failureThreshold: 2
    {{- end }}
    {{- if $serving }}
    lifecycle:
      preStop:
        exec:
          command: ["sleep", "5"]
    {{- end }}
    resources:
      {{- toYaml $values.resources | nindent 6 }}
    securityContext:
      {{- toYaml $root.Values.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/hookline/config
        readOnly: true
      - name: secrets
        mountPath: /etc/hookline/secrets
        readOnly: true
      - name: data
        mountPath: /var/lib/hookline
      - name: tmp
        mountPath: /tmp
volumes:
  - name: config
    configMap:
      name: {{ include "hookline.fullname" $root }}
  - name: secrets
    secret:
      secretName: {{ include "hookline.secretName" $root }}
      defaultMode: 0440
  - name: data
    emptyDir: {}
  - name: tmp
    emptyDir: {}
{{- with $values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Variables that point each secret key at its mounted file. */}}
{{- define "hookline.secretEnv" -}}
- name: HOOKLINE_API__ADMIN_TOKEN_FILE
  value: /etc/hookline/secrets/admin-token
- name: HOOKLINE_STORAGE__URL_FILE
  value: /etc/hookline/secrets/storage-url
- name: HOOKLINE_QUEUE__URL_FILE
  value: /etc/hookline/secrets/queue-url
{{- if .Values.redis.enabled }}
- name: HOOKLINE_REDIS__URL_FILE
  value: /etc/hookline/secrets/redis-url
{{- end }}
{{- if .Values.gateway.enabled }}
- name: HOOKLINE_GATEWAY__TOKEN_FILE
  value: /etc/hookline/secrets/gateway-token
{{- end }}
{{- if include "hookline.threescale" . }}
- name: HOOKLINE_DIRECTORY__ACCESS_TOKEN_FILE
  value: /etc/hookline/secrets/directory-access-token
{{- end }}
{{- if .Values.kafka.saslPassword }}
- name: HOOKLINE_KAFKA__SASL_PASSWORD_FILE
  value: /etc/hookline/secrets/kafka-sasl-password
{{- end }}
{{- end -}}
