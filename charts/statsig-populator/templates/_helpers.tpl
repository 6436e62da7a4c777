{{/*
Names and labels.
*/}}
{{- define "statsig-populator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "statsig-populator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A CronJob's name is limited to 52 characters (its Jobs get a suffix). */}}
{{- define "statsig-populator.cronjobName" -}}
{{- include "statsig-populator.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{- define "statsig-populator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "statsig-populator.labels" -}}
helm.sh/chart: {{ include "statsig-populator.chart" . }}
{{ include "statsig-populator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selects every pod of the release: the workers and the helm test pod (NetworkPolicy). */}}
{{- define "statsig-populator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "statsig-populator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the worker pods only (Deployment, Service, monitors, anti-affinity). */}}
{{- define "statsig-populator.workerSelectorLabels" -}}
{{ include "statsig-populator.selectorLabels" . }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "statsig-populator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "statsig-populator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "statsig-populator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
Secrets. The chart-created Secret holds whatever is given in values and not taken from an
existing Secret; every secret reaches the pod as a file in one projected volume.
*/}}
{{- define "statsig-populator.secretsDir" -}}/etc/statsig-populator/secrets{{- end }}
{{- define "statsig-populator.redisTLSDir" -}}/etc/statsig-populator/redis-tls{{- end }}
{{- define "statsig-populator.statsigCADir" -}}/etc/statsig-populator/statsig-ca{{- end }}

{{- define "statsig-populator.snapshotDir" -}}/etc/statsig-populator/snapshot{{- end }}

{{/* "true" when an offline snapshot archive is mounted in place of the CDN. */}}
{{- define "statsig-populator.offlineSnapshot" -}}
{{- with .Values.statsig.offlineSnapshot }}{{ if or .existingConfigMap .existingSecret .volume }}true{{ end }}{{ end }}
{{- end }}

{{- define "statsig-populator.chartSecretSDKKeys" -}}
{{- if and .Values.sdkKeys (not .Values.existingSecret) }}true{{ end }}
{{- end }}

{{- define "statsig-populator.chartSecretRedisPassword" -}}
{{- if and .Values.redis.password (not .Values.redis.existingSecret) }}true{{ end }}
{{- end }}

{{- define "statsig-populator.chartSecretSentinelPassword" -}}
{{- if and .Values.redis.sentinel.password (not .Values.redis.existingSecret) }}true{{ end }}
{{- end }}

{{- define "statsig-populator.createSecret" -}}
{{- if or (include "statsig-populator.chartSecretSDKKeys" .) (include "statsig-populator.chartSecretRedisPassword" .) (include "statsig-populator.chartSecretSentinelPassword" .) }}true{{ end }}
{{- end }}

{{- define "statsig-populator.redisPasswordEnabled" -}}
{{- if or .Values.redis.existingSecret .Values.redis.password }}true{{ end }}
{{- end }}

{{- define "statsig-populator.sentinelPasswordEnabled" -}}
{{- if .Values.redis.existingSecret }}
{{- if .Values.redis.sentinel.existingSecretKey }}true{{ end }}
{{- else if .Values.redis.sentinel.password }}true{{ end }}
{{- end }}

{{- define "statsig-populator.redisTLSFiles" -}}
{{- if and .Values.redis.tls.enabled .Values.redis.tls.existingSecret (or .Values.redis.tls.caKey .Values.redis.tls.certKey) }}true{{ end }}
{{- end }}

{{- define "statsig-populator.statsigCA" -}}
{{- if or .Values.statsig.caBundle.existingSecret .Values.statsig.caBundle.existingConfigMap }}true{{ end }}
{{- end }}

{{/*
REDIS_URL, always without credentials: host, port, database and go-redis options.
*/}}
{{- define "statsig-populator.redisURL" -}}
{{- $host := .Values.redis.host }}
{{- if contains ":" $host }}{{ $host = printf "[%s]" $host }}{{ end }}
{{- $query := list }}
{{- range $k, $v := .Values.redis.options }}
{{- $query = append $query (printf "%s=%s" (urlquery $k) (urlquery (toString $v))) }}
{{- end }}
{{- printf "redis://%s:%d/%d" $host (int64 .Values.redis.port) (int64 .Values.redis.db) }}
{{- if $query }}?{{ join "&" $query }}{{ end }}
{{- end }}

{{/*
The worker's environment (the ConfigMap's data). Settings with a worker default are always
written, defaults included; optional settings are written only when set; file variables only when
the file is mounted.
*/}}
{{- define "statsig-populator.env" -}}
{{- $v := .Values -}}
STATSIG_SERVER_SDK_KEYS_FILE: {{ printf "%s/sdk-keys" (include "statsig-populator.secretsDir" .) | quote }}
{{- if include "statsig-populator.offlineSnapshot" . }}
STATSIG_API_URL: {{ printf "file://%s/%s" (include "statsig-populator.snapshotDir" .) $v.statsig.offlineSnapshot.key | quote }}
{{- else }}
STATSIG_API_URL: {{ $v.statsig.apiUrl | quote }}
{{- end }}
STATSIG_DCS_VERSIONS: {{ join "," $v.statsig.dcsVersions | quote }}
POLL_INTERVAL: {{ $v.statsig.pollInterval | quote }}
{{- with toString $v.statsig.idLists }}
STATSIG_ID_LISTS: {{ . | quote }}
{{- end }}
ID_LISTS_POLL_INTERVAL: {{ $v.statsig.idListsPollInterval | quote }}
POLL_CONCURRENCY: {{ int64 $v.statsig.pollConcurrency | quote }}
FETCH_TIMEOUT: {{ $v.statsig.fetchTimeout | quote }}
{{- with $v.statsig.conditionalFetchTimeout }}
CONDITIONAL_FETCH_TIMEOUT: {{ . | quote }}
{{- end }}
MAX_PAYLOAD_BYTES: {{ int64 $v.statsig.maxPayloadBytes | quote }}
MAX_CLOCK_SKEW: {{ $v.statsig.maxClockSkew | quote }}
DELETE_ON_UNAUTHORIZED: {{ $v.statsig.deleteOnUnauthorized | toString | quote }}
UNAUTHORIZED_RECHECK: {{ $v.statsig.unauthorizedRecheck | quote }}
UNAUTHORIZED_DELETE_AFTER: {{ $v.statsig.unauthorizedDeleteAfter | quote }}
DELETE_REMOVED_KEYS: {{ $v.statsig.deleteRemovedKeys | toString | quote }}
{{- if include "statsig-populator.statsigCA" . }}
STATSIG_CA_FILE: {{ printf "%s/ca.crt" (include "statsig-populator.statsigCADir" .) | quote }}
{{- end }}
{{- with $v.statsig.httpsProxy }}
HTTPS_PROXY: {{ . | quote }}
{{- end }}
{{- with $v.statsig.noProxy }}
NO_PROXY: {{ . | quote }}
{{- end }}
REDIS_URL: {{ include "statsig-populator.redisURL" . | quote }}
REDIS_DB: {{ int64 $v.redis.db | quote }}
{{- with $v.redis.cluster.addrs }}
REDIS_CLUSTER_ADDRS: {{ join "," . | quote }}
{{- end }}
{{- with $v.redis.sentinel.addrs }}
REDIS_SENTINEL_ADDRS: {{ join "," . | quote }}
REDIS_SENTINEL_MASTER: {{ $v.redis.sentinel.master | quote }}
{{- end }}
{{- if include "statsig-populator.sentinelPasswordEnabled" . }}
REDIS_SENTINEL_PASSWORD_FILE: {{ printf "%s/redis-sentinel-password" (include "statsig-populator.secretsDir" .) | quote }}
{{- end }}
{{- with $v.redis.username }}
REDIS_USERNAME: {{ . | quote }}
{{- end }}
{{- if include "statsig-populator.redisPasswordEnabled" . }}
REDIS_PASSWORD_FILE: {{ printf "%s/redis-password" (include "statsig-populator.secretsDir" .) | quote }}
{{- end }}
REDIS_TLS: {{ $v.redis.tls.enabled | toString | quote }}
{{- if include "statsig-populator.redisTLSFiles" . }}
{{- if $v.redis.tls.caKey }}
REDIS_TLS_CA_FILE: {{ printf "%s/ca.crt" (include "statsig-populator.redisTLSDir" .) | quote }}
{{- end }}
{{- if $v.redis.tls.certKey }}
REDIS_TLS_CERT_FILE: {{ printf "%s/tls.crt" (include "statsig-populator.redisTLSDir" .) | quote }}
REDIS_TLS_KEY_FILE: {{ printf "%s/tls.key" (include "statsig-populator.redisTLSDir" .) | quote }}
{{- end }}
{{- end }}
{{- with $v.redis.tls.serverName }}
REDIS_TLS_SERVER_NAME: {{ . | quote }}
{{- end }}
REDIS_TLS_INSECURE_SKIP_VERIFY: {{ $v.redis.tls.insecureSkipVerify | toString | quote }}
{{- with $v.redis.keyPrefix }}
REDIS_KEY_PREFIX: {{ . | quote }}
{{- end }}
REDIS_KEY_SCHEMAS: {{ join "," $v.redis.keySchemas | quote }}
REDIS_FORMATS: {{ join "," $v.redis.formats | quote }}
REDIS_NODE_REDIS_HASH: {{ $v.redis.nodeRedisHash | quote }}
REDIS_KEY_TTL: {{ $v.redis.keyTTL | toString | quote }}
REDIS_WAIT_REPLICAS: {{ int64 $v.redis.waitReplicas | quote }}
REDIS_WAIT_TIMEOUT: {{ $v.redis.waitTimeout | quote }}
LEADER_ELECTION: {{ $v.leaderElection.enabled | toString | quote }}
LEADER_LEASE: {{ $v.leaderElection.lease | quote }}
ADMIN_ADDR: {{ printf ":%d" (int64 $v.admin.port) | quote }}
METRICS_PER_KEY: {{ $v.metrics.perKey | toString | quote }}
LOG_LEVEL: {{ $v.log.level | quote }}
LOG_FORMAT: {{ $v.log.format | quote }}
{{- end }}

{{/*
The pod spec shared by the Deployment, the CronJob and the helm test pod.
Arguments: dict "root" $ "args" (list …) "probes" bool "restartPolicy" string "affinity" bool.
"probes" is true for the long-running worker: only `populator run` serves the admin port.
*/}}
{{- define "statsig-populator.podSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
serviceAccountName: {{ include "statsig-populator.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
enableServiceLinks: false
{{- with .restartPolicy }}
restartPolicy: {{ . }}
{{- end }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
terminationGracePeriodSeconds: {{ int64 $v.terminationGracePeriodSeconds }}
{{- with $v.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
containers:
  - name: populator
    image: {{ include "statsig-populator.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      {{- toYaml .args | nindent 6 }}
    {{- if .probes }}
    ports:
      - name: admin
        containerPort: {{ int64 $v.admin.port }}
        protocol: TCP
    {{- end }}
    envFrom:
      - configMapRef:
          name: {{ include "statsig-populator.fullname" $root }}
    {{- with $v.extraEnv }}
    env:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- if .probes }}
    {{- range $probe := list "startupProbe" "livenessProbe" "readinessProbe" }}
    {{- $p := index $v $probe }}
    {{- if $p.enabled }}
    {{ $probe }}:
      {{- omit $p "enabled" | toYaml | nindent 6 }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- with $v.resources }}
    resources:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.securityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    volumeMounts:
      - name: secrets
        mountPath: {{ include "statsig-populator.secretsDir" $root }}
        readOnly: true
      {{- if include "statsig-populator.redisTLSFiles" $root }}
      - name: redis-tls
        mountPath: {{ include "statsig-populator.redisTLSDir" $root }}
        readOnly: true
      {{- end }}
      {{- if include "statsig-populator.statsigCA" $root }}
      - name: statsig-ca
        mountPath: {{ include "statsig-populator.statsigCADir" $root }}
        readOnly: true
      {{- end }}
      {{- if include "statsig-populator.offlineSnapshot" $root }}
      - name: offline-snapshot
        mountPath: {{ include "statsig-populator.snapshotDir" $root }}
        readOnly: true
      {{- end }}
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: secrets
    projected:
      defaultMode: 0440
      sources:
        - secret:
            name: {{ $v.existingSecret | default (include "statsig-populator.fullname" $root) }}
            items:
              - key: {{ ternary $v.existingSecretKey "sdk-keys" (ne $v.existingSecret "") }}
                path: sdk-keys
        {{- if or (include "statsig-populator.redisPasswordEnabled" $root) (include "statsig-populator.sentinelPasswordEnabled" $root) }}
        - secret:
            name: {{ $v.redis.existingSecret | default (include "statsig-populator.fullname" $root) }}
            items:
              {{- if include "statsig-populator.redisPasswordEnabled" $root }}
              - key: {{ ternary $v.redis.existingSecretKey "redis-password" (ne $v.redis.existingSecret "") }}
                path: redis-password
              {{- end }}
              {{- if include "statsig-populator.sentinelPasswordEnabled" $root }}
              - key: {{ ternary $v.redis.sentinel.existingSecretKey "redis-sentinel-password" (ne $v.redis.existingSecret "") }}
                path: redis-sentinel-password
              {{- end }}
        {{- end }}
  {{- if include "statsig-populator.redisTLSFiles" $root }}
  - name: redis-tls
    secret:
      secretName: {{ $v.redis.tls.existingSecret }}
      defaultMode: 0440
      items:
        {{- with $v.redis.tls.caKey }}
        - key: {{ . }}
          path: ca.crt
        {{- end }}
        {{- if $v.redis.tls.certKey }}
        - key: {{ $v.redis.tls.certKey }}
          path: tls.crt
        - key: {{ $v.redis.tls.keyKey }}
          path: tls.key
        {{- end }}
  {{- end }}
  {{- if include "statsig-populator.statsigCA" $root }}
  - name: statsig-ca
    {{- if $v.statsig.caBundle.existingSecret }}
    secret:
      secretName: {{ $v.statsig.caBundle.existingSecret }}
    {{- else }}
    configMap:
      name: {{ $v.statsig.caBundle.existingConfigMap }}
    {{- end }}
      defaultMode: 0444
      items:
        - key: {{ $v.statsig.caBundle.key }}
          path: ca.crt
  {{- end }}
  {{- if include "statsig-populator.offlineSnapshot" $root }}
  {{- $o := $v.statsig.offlineSnapshot }}
  - name: offline-snapshot
    {{- if $o.existingConfigMap }}
    configMap:
      name: {{ $o.existingConfigMap }}
      defaultMode: 0444
      items:
        - key: {{ $o.key }}
          path: {{ $o.key }}
    {{- else if $o.existingSecret }}
    secret:
      secretName: {{ $o.existingSecret }}
      defaultMode: 0444
      items:
        - key: {{ $o.key }}
          path: {{ $o.key }}
    {{- else }}
    {{- toYaml $o.volume | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if and .affinity (eq $v.podAntiAffinityPreset "soft") }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "statsig-populator.workerSelectorLabels" $root | nindent 14 }}
{{- else if and .affinity (eq $v.podAntiAffinityPreset "hard") }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "statsig-populator.workerSelectorLabels" $root | nindent 12 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Checks what the schema cannot express. Every message names the value to change; none quotes a
secret.
*/}}
{{- define "statsig-populator.validate" -}}
{{- $v := .Values -}}
{{- $errs := list -}}
{{- if and (not $v.sdkKeys) (not $v.existingSecret) }}
{{- $errs = append $errs "no SDK key: set sdkKeys (a list of server secret keys) or existingSecret (a Secret holding them)" }}
{{- end }}
{{- if and $v.sdkKeys $v.existingSecret }}
{{- $errs = append $errs "set sdkKeys or existingSecret, not both" }}
{{- end }}
{{- range $i, $k := $v.sdkKeys }}
{{- if hasPrefix "client-" $k }}
{{- $errs = append $errs (printf "sdkKeys[%d] is a client key; the worker needs server secret keys (secret-…)" $i) }}
{{- else if hasPrefix "console-" $k }}
{{- $errs = append $errs (printf "sdkKeys[%d] is a console API key; the worker needs server secret keys (secret-…)" $i) }}
{{- else if not (regexMatch "^secret-[A-Za-z0-9_-]+$" $k) }}
{{- $errs = append $errs (printf "sdkKeys[%d] is not a server secret key (secret- followed by letters, digits, - and _)" $i) }}
{{- end }}
{{- end }}
{{- if and $v.redis.password $v.redis.existingSecret }}
{{- $errs = append $errs "set redis.password or redis.existingSecret, not both" }}
{{- end }}
{{- if and $v.redis.sentinel.password $v.redis.existingSecret }}
{{- $errs = append $errs "with redis.existingSecret, give the Sentinel password's key in redis.sentinel.existingSecretKey instead of redis.sentinel.password" }}
{{- end }}
{{- if and $v.redis.sentinel.existingSecretKey (not $v.redis.existingSecret) }}
{{- $errs = append $errs "redis.sentinel.existingSecretKey needs redis.existingSecret" }}
{{- end }}
{{- if and $v.redis.cluster.addrs $v.redis.sentinel.addrs }}
{{- $errs = append $errs "set redis.cluster.addrs or redis.sentinel.addrs, not both" }}
{{- end }}
{{- if and $v.redis.sentinel.addrs (not $v.redis.sentinel.master) }}
{{- $errs = append $errs "redis.sentinel.master is required with redis.sentinel.addrs" }}
{{- end }}
{{- if and (or $v.redis.sentinel.password $v.redis.sentinel.existingSecretKey) (not $v.redis.sentinel.addrs) }}
{{- $errs = append $errs "a Sentinel password is set but redis.sentinel.addrs is empty" }}
{{- end }}
{{- if and $v.redis.cluster.addrs (ne (int64 $v.redis.db) 0) }}
{{- $errs = append $errs "redis.db must be 0 with redis.cluster.addrs: Redis Cluster has only database 0" }}
{{- end }}
{{- range $i, $a := concat $v.redis.cluster.addrs $v.redis.sentinel.addrs }}
{{- if not (regexMatch "^(\\[[0-9A-Fa-f:.]+\\]|[^:/@\\s]+):[0-9]{1,5}$" $a) }}
{{- $errs = append $errs (printf "%q in redis.cluster.addrs or redis.sentinel.addrs is not host:port" $a) }}
{{- end }}
{{- end }}
{{- $tls := $v.redis.tls }}
{{- if and (not $tls.enabled) (or $tls.existingSecret $tls.certKey $tls.keyKey $tls.serverName $tls.insecureSkipVerify) }}
{{- $errs = append $errs "redis.tls settings are given but redis.tls.enabled is false" }}
{{- end }}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) }}
{{- $errs = append $errs "redis.tls.certKey and redis.tls.keyKey go together (mutual TLS)" }}
{{- end }}
{{- if and $tls.certKey (not $tls.existingSecret) }}
{{- $errs = append $errs "redis.tls.certKey needs redis.tls.existingSecret" }}
{{- end }}
{{- if and (has "sfp" $v.redis.formats) (has "string" $v.redis.formats) }}
{{- $errs = append $errs "redis.formats: sfp and string write the same key names; choose one" }}
{{- end }}
{{- with $v.statsig.offlineSnapshot }}
{{- if gt (len (compact (list .existingConfigMap .existingSecret (ternary "volume" "" (not (empty .volume)))))) 1 }}
{{- $errs = append $errs "set one of statsig.offlineSnapshot.existingConfigMap, existingSecret or volume" }}
{{- end }}
{{- end }}
{{- if and $v.statsig.caBundle.existingSecret $v.statsig.caBundle.existingConfigMap }}
{{- $errs = append $errs "set statsig.caBundle.existingSecret or statsig.caBundle.existingConfigMap, not both" }}
{{- end }}
{{- if eq $v.mode "cronjob" }}
{{- range $name := list "podDisruptionBudget" "podMonitor" "serviceMonitor" "service" }}
{{- if (index $v $name).enabled }}
{{- $errs = append $errs (printf "%s.enabled applies to mode deployment only (a CronJob's pods are short-lived)" $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $v.podMonitor.enabled $v.serviceMonitor.enabled }}
{{- $errs = append $errs "enable podMonitor or serviceMonitor, not both: the pods would be scraped twice" }}
{{- end }}
{{- range $e := $v.extraEnv }}
{{- if and (has $e.name (list "STATSIG_SERVER_SDK_KEYS" "REDIS_PASSWORD" "REDIS_SENTINEL_PASSWORD")) (hasKey $e "value") }}
{{- $errs = append $errs (printf "extraEnv %s: secrets never go into the pod spec as plain values; use sdkKeys/existingSecret, redis.password/existingSecret, or a valueFrom.secretKeyRef" $e.name) }}
{{- end }}
{{- end }}
{{- if $errs }}
{{- fail (printf "\n\nstatsig-populator: invalid values:\n  - %s\n" (join "\n  - " $errs)) }}
{{- end }}
{{- end }}
