{{/* Names -------------------------------------------------------------------------------------- */}}
{{- define "stadtlink.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stadtlink.fullname" -}}
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

{{- define "stadtlink.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stadtlink.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stadtlink.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "stadtlink.labels" -}}
helm.sh/chart: {{ include "stadtlink.chart" . }}
{{ include "stadtlink.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: stadtlink
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* "water_level" → "<fullname>-water-level" (DNS-1123 names; "-<shard>" appended by callers). */}}
{{- define "stadtlink.adapterName" -}}
{{- $base := printf "%s-%s" (include "stadtlink.fullname" .root) (.name | replace "_" "-") -}}
{{- $base | trunc 55 | trimSuffix "-" -}}
{{- end -}}

{{- define "stadtlink.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stadtlink.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "stadtlink.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "stadtlink.redisImage" -}}
{{- if .Values.redis.image.digest -}}
{{- printf "%s@%s" .Values.redis.image.repository .Values.redis.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.redis.image.repository .Values.redis.image.tag -}}
{{- end -}}
{{- end -}}

{{/* Pod-level pieces shared by every pod ---------------------------------------------------------- */}}
{{- define "stadtlink.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{- define "stadtlink.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Redis ---------------------------------------------------------------------------------------- */}}
{{- define "stadtlink.redisInChart" -}}
{{- if and (eq .Values.outbox.kind "redis") .Values.redis.enabled -}}true{{- end -}}
{{- end -}}

{{- define "stadtlink.redisName" -}}
{{- printf "%s-redis" (include "stadtlink.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stadtlink.redisSecretName" -}}
{{- default (include "stadtlink.redisName" .) .Values.redis.auth.existingSecret -}}
{{- end -}}

{{- define "stadtlink.redisHost" -}}
{{- printf "%s.%s.svc.%s" (include "stadtlink.redisName" .) .Release.Namespace .Values.contextServer.clusterDomain -}}
{{- end -}}

{{/* Context server ------------------------------------------------------------------------------- */}}
{{- define "stadtlink.contextServerName" -}}
{{- printf "%s-contexts" (include "stadtlink.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stadtlink.contextServerBase" -}}
{{- printf "http://%s.%s.svc.%s:%v" (include "stadtlink.contextServerName" .) .Release.Namespace .Values.contextServer.clusterDomain .Values.contextServer.port -}}
{{- end -}}

{{/* The @context URL the adapters send: broker.context, else the in-chart compound context. */}}
{{- define "stadtlink.contextURL" -}}
{{- if .Values.broker.context -}}
{{- .Values.broker.context -}}
{{- else if .Values.contextServer.enabled -}}
{{- printf "%s/stadtlink-context.jsonld" (include "stadtlink.contextServerBase" .) -}}
{{- end -}}
{{- end -}}

{{/* The compound context with in-cluster URLs: each upstream URL of files/stadtlink-context.jsonld
     becomes <base>/<host><path>, the path adapters/core/context_server.py serves that file at. */}}
{{- define "stadtlink.compoundContext" -}}
{{- $upstream := (.Files.Get "files/stadtlink-context.jsonld" | fromJson) -}}
{{- $base := include "stadtlink.contextServerBase" . -}}
{{- $urls := list -}}
{{- range (index $upstream "@context") -}}
{{- $u := urlParse . -}}
{{- $urls = append $urls (printf "%s/%s%s" $base $u.host $u.path) -}}
{{- end -}}
{{- dict "@context" $urls | toPrettyJson -}}
{{- end -}}

{{/* Adapters ------------------------------------------------------------------------------------- */}}
{{/* Every adapter entry (built-in and extra), as a dict name → values. */}}
{{- define "stadtlink.allAdapters" -}}
{{- $all := dict -}}
{{- range $name, $a := .Values.adapters }}{{- $_ := set $all $name $a -}}{{- end -}}
{{- range $name, $a := .Values.extraAdapters -}}
{{- if hasKey $.Values.adapters $name -}}
{{- fail (printf "extraAdapters.%s: %q is a built-in adapter; configure it under adapters.%s" $name $name $name) -}}
{{- end -}}
{{- $_ := set $all $name $a -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{/* An adapter setting with the `defaults` fallback: (dict "root" $ "a" $adapter "key" "resources") */}}
{{- define "stadtlink.adapterValue" -}}
{{- $v := get .a .key -}}
{{- $d := get .root.Values.defaults .key -}}
{{- if or (kindIs "invalid" $v) (and (not (kindIs "bool" $v)) (not (kindIs "float64" $v)) (not (kindIs "int64" $v)) (empty $v)) -}}
{{- $v = $d -}}
{{- else if and (has .key (list "autoscaling" "pdb")) (kindIs "map" $v) (kindIs "map" $d) -}}
{{- $v = mustMergeOverwrite (deepCopy $d) $v -}}
{{- end -}}
{{- toJson (dict "v" $v) -}}
{{- end -}}

{{- define "stadtlink.isPull" -}}
{{- $pull := false -}}
{{- range ((.config | default dict).sources | default list) -}}
{{- if has (.kind | toString) (list "http-poll" "modbus") -}}{{- $pull = true -}}{{- end -}}
{{- end -}}
{{- if $pull -}}true{{- end -}}
{{- end -}}

{{/* "true" when the pods of an adapter take their MQTT client ids from their pod names
     (client_id_env): every MQTT source without an own client id. A restarted container keeps its
     pod name, so it resumes its session (and, in a shared group, the share queued in it) instead
     of leaving an orphaned session behind whose queue expires; one pod as much as several.
     workload: statefulset keeps the name across a reschedule too. */}}
{{- define "stadtlink.podNameClientIds" -}}
{{- range ((.a.config | default dict).sources | default list) -}}
{{- if and (eq (.kind | toString) "mqtt") (not .client_id) (not .client_id_env) -}}true{{- end -}}
{{- end -}}
{{- end -}}

{{/* The environment variable the i-th MQTT source takes its client id from: POD_NAME when the
     adapter has one MQTT source, else MQTT_CLIENT_ID_<i> (= "$(POD_NAME)-<i>", see adapters.yaml):
     two sources of one pod must not share a client id. Args: dict "a" adapter "i" index */}}
{{- define "stadtlink.mqttClientIdEnv" -}}
{{- $n := 0 -}}
{{- range ((.a.config | default dict).sources | default list) -}}{{- if eq (.kind | toString) "mqtt" -}}{{- $n = add1 $n -}}{{- end -}}{{- end -}}
{{- if eq (int $n) 1 -}}POD_NAME{{- else -}}{{- printf "MQTT_CLIENT_ID_%d" (int .i) -}}{{- end -}}
{{- end -}}

{{/* Checks of one adapter entry that the schema cannot express (or that must hold even with
     --skip-schema-validation). Fails with a message naming the key. */}}
{{- define "stadtlink.checkAdapter" -}}
{{- $name := .name -}}{{- $a := .a -}}{{- $root := .root -}}
{{- $cfg := $a.config | default dict -}}
{{- $sources := $cfg.sources | default list -}}
{{- if not $sources -}}
{{- fail (printf "adapters.%s.config.sources: an enabled adapter needs at least one source (see the chart README)" $name) -}}
{{- end -}}
{{- $replicas := int ($a.replicas | default 1) -}}
{{- $shards := int ($a.shards | default 1) -}}
{{- $auto := (fromJson (include "stadtlink.adapterValue" (dict "root" $root "a" $a "key" "autoscaling"))).v -}}
{{- $pull := include "stadtlink.isPull" (dict "config" $cfg) -}}
{{- if and $pull (gt $replicas 1) -}}
{{- fail (printf "adapters.%s.replicas: %d replicas of an adapter with a pull source (http-poll/modbus) would poll every device %d times; keep replicas: 1 and set shards: N to split the targets" $name $replicas $replicas) -}}
{{- end -}}
{{- if and $pull $auto.enabled -}}
{{- fail (printf "adapters.%s.autoscaling: a HorizontalPodAutoscaler is for MQTT/webhook adapters only; adapters with pull sources (http-poll/modbus) scale with shards" $name) -}}
{{- end -}}
{{- if $auto.enabled -}}
{{- $res := (fromJson (include "stadtlink.adapterValue" (dict "root" $root "a" $a "key" "resources"))).v | default dict -}}
{{- if not (($res.requests | default dict).cpu) -}}
{{- fail (printf "adapters.%s.autoscaling: the HorizontalPodAutoscaler scales on CPU utilisation, which needs resources.requests.cpu" $name) -}}
{{- end -}}
{{- end -}}
{{- if or (gt $replicas 1) (gt $shards 1) $auto.enabled -}}
{{- range $i, $s := $sources -}}
{{- if eq ($s.kind | toString) "mqtt" -}}
{{- if not $s.shared_group -}}
{{- fail (printf "adapters.%s.config.sources[%d]: more than one pod of this adapter subscribes; set shared_group (MQTT shared subscriptions, the broker must support them) so each uplink reaches one pod, or keep replicas: 1, shards: 1" $name $i) -}}
{{- end -}}
{{- if $s.client_id -}}
{{- fail (printf "adapters.%s.config.sources[%d].client_id: a fixed client_id cannot be shared by several pods (they would disconnect each other); remove it (the chart gives each pod its own, stable one: client_id_env: POD_NAME)" $name $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $workload := $a.workload | default "deployment" | toString -}}
{{- if not (has $workload (list "deployment" "statefulset")) -}}
{{- fail (printf "adapters.%s.workload: %q; use deployment or statefulset" $name $workload) -}}
{{- end -}}
{{- if eq $workload "statefulset" -}}
{{- $longest := include "stadtlink.shardName" (dict "root" $root "name" $name "shard" (sub $shards 1) "shards" $shards) -}}
{{- if gt (len $longest) 52 -}}
{{- fail (printf "adapters.%s.workload: statefulset: the StatefulSet name %q is longer than 52 characters (its pods' controller-revision-hash label would exceed 63); shorten the release name or set fullnameOverride" $name $longest) -}}
{{- end -}}
{{- end -}}
{{- if gt $shards 1 -}}
{{- $maxTargets := 0 -}}
{{- range $sources -}}{{- if has (.kind | toString) (list "http-poll" "modbus") -}}{{- $maxTargets = max $maxTargets (len .targets) -}}{{- end -}}{{- end -}}
{{- if not $pull -}}
{{- fail (printf "adapters.%s.shards: shards split the targets of pull sources (http-poll/modbus); this adapter has none, scale it with replicas" $name) -}}
{{- end -}}
{{- if gt $shards (int $maxTargets) -}}
{{- fail (printf "adapters.%s.shards: %d shards but at most %d targets in a pull source; some shards would be idle" $name $shards (int $maxTargets)) -}}
{{- end -}}
{{- end -}}
{{- range $file, $_ := ($a.registryFiles | default dict) -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $file) -}}
{{- fail (printf "adapters.%s.registryFiles: %q is not a valid file name (letters, digits, '-', '_', '.')" $name $file) -}}
{{- end -}}
{{- if eq $file "config.yaml" -}}
{{- fail (printf "adapters.%s.registryFiles: config.yaml is the adapter's config, pick another name" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The runtime auth block for a chart auth value (broker.auth or adapters.<n>.brokerAuth). */}}
{{- define "stadtlink.authConfig" -}}
{{- $auth := .auth -}}
{{- $dir := .dir -}}
{{- if eq $auth.kind "token" -}}
{{- toJson (dict "kind" "token" "file" (printf "%s/%s" $dir ($auth.tokenKey | default "token"))) -}}
{{- else if eq $auth.kind "oauth2" -}}
{{- $o := dict "kind" "oauth2" "token_url" $auth.tokenUrl "client_id" $auth.clientId "client_secret_file" (printf "%s/%s" $dir ($auth.clientSecretKey | default "client-secret")) -}}
{{- with $auth.scope }}{{- $_ := set $o "scope" . -}}{{- end -}}
{{- with $auth.audience }}{{- $_ := set $o "audience" . -}}{{- end -}}
{{- toJson $o -}}
{{- else -}}
null
{{- end -}}
{{- end -}}

{{/* The effective broker auth value of an adapter (its brokerAuth when it sets a kind). */}}
{{- define "stadtlink.effectiveAuth" -}}
{{- $own := .a.brokerAuth | default dict -}}
{{- if $own.kind -}}{{- toJson $own -}}{{- else -}}{{- toJson .root.Values.broker.auth -}}{{- end -}}
{{- end -}}

{{- define "stadtlink.checkAuth" -}}
{{- $auth := .auth -}}
{{- if ne $auth.kind "none" -}}
{{- if not $auth.existingSecret -}}
{{- fail (printf "%s.existingSecret: broker auth kind %s needs a Secret with the %s" .where $auth.kind (ternary "token" "client secret" (eq $auth.kind "token"))) -}}
{{- end -}}
{{- if and (eq $auth.kind "oauth2") (or (not $auth.tokenUrl) (not $auth.clientId)) -}}
{{- fail (printf "%s: oauth2 needs tokenUrl and clientId" .where) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Several sinks ------------------------------------------------------------------------------- */}}
{{/* The sink list of an adapter: adapters.<name>.brokers, else the release's brokers, else empty
     (the single `broker`). Returns JSON {"list": [...], "where": "<values key>"}. */}}
{{- define "stadtlink.sinks" -}}
{{- $own := .a.brokers | default list -}}
{{- if $own -}}
{{- toJson (dict "list" $own "where" (printf "adapters.%s.brokers" .name)) -}}
{{- else if .root.Values.brokers -}}
{{- toJson (dict "list" .root.Values.brokers "where" "brokers") -}}
{{- else -}}
{{- toJson (dict "list" list "where" "") -}}
{{- end -}}
{{- end -}}

{{/* A sink entry's chart auth value with kind defaulting to none. */}}
{{- define "stadtlink.sinkAuth" -}}
{{- toJson (mustMergeOverwrite (dict "kind" "none") (deepCopy (.auth | default dict))) -}}
{{- end -}}

{{/* Where the Secret of sink i is mounted. */}}
{{- define "stadtlink.sinkAuthDir" -}}
{{- printf "/var/run/secrets/stadtlink/broker-auth-%d" (int .) -}}
{{- end -}}

{{/* Checks of a sink list (args: dict "list" [...] "where" "brokers"), also with
     --skip-schema-validation: each url, each auth, and the sink names the runtime derives
     (name, else kind when it is the only one of its kind, else <kind>-<i>) must be unique. */}}
{{- define "stadtlink.checkSinks" -}}
{{- $where := .where -}}
{{- $kinds := list -}}
{{- range .list -}}{{- $kinds = append $kinds (.kind | default "orion-ld") -}}{{- end -}}
{{- $names := list -}}
{{- range $i, $s := .list -}}
{{- if not (kindIs "map" $s) -}}
{{- fail (printf "%s[%d]: each sink is a mapping with at least url (and kind, name, ...)" $where $i) -}}
{{- end -}}
{{- if not (regexMatch "^https?://" ($s.url | default "" | toString)) -}}
{{- fail (printf "%s[%d].url: the sink's base URL is required and must start with http:// or https:// (got %q)" $where $i ($s.url | default "" | toString)) -}}
{{- end -}}
{{- $auth := include "stadtlink.sinkAuth" (dict "auth" $s.auth) | fromJson -}}
{{- include "stadtlink.checkAuth" (dict "auth" $auth "where" (printf "%s[%d].auth" $where $i)) -}}
{{- $kind := $s.kind | default "orion-ld" -}}
{{- $name := $s.name | default "" -}}
{{- if not $name -}}
{{- $count := 0 -}}
{{- range $kinds -}}{{- if eq . $kind -}}{{- $count = add1 $count -}}{{- end -}}{{- end -}}
{{- $name = ternary $kind (printf "%s-%d" $kind $i) (eq (int $count) 1) -}}
{{- end -}}
{{- if has $name $names -}}
{{- fail (printf "%s[%d].name: %q names two sinks; give each a different name" $where $i $name) -}}
{{- end -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}

{{/* Checks of one adapter's sinks: with a list (its own or the release's) neither config.broker
     nor brokerAuth may be given -- they would say which of the sinks? */}}
{{- define "stadtlink.checkAdapterSinks" -}}
{{- $sinks := include "stadtlink.sinks" (dict "root" .root "name" .name "a" .a) | fromJson -}}
{{- if $sinks.list -}}
{{- if (.a.config | default dict).broker -}}
{{- fail (printf "adapters.%s.config.broker: this adapter writes to several sinks (%s); set their keys in the entries of %s (adapters.%s.brokers replaces the release's list for this adapter), not in config.broker" .name $sinks.where $sinks.where .name) -}}
{{- end -}}
{{- if (.a.brokerAuth | default dict).kind -}}
{{- fail (printf "adapters.%s.brokerAuth: this adapter writes to several sinks (%s); give each sink its own auth in %s[i].auth" .name $sinks.where $sinks.where) -}}
{{- end -}}
{{- include "stadtlink.checkSinks" $sinks -}}
{{- end -}}
{{- end -}}

{{/* One sink entry → its runtime config: the entry minus the chart auth, the auth as files of its
     Secret (mounted at broker-auth-<i>), and the in-chart @context for NGSI-LD kinds. */}}
{{- define "stadtlink.sinkConfig" -}}
{{- $s := deepCopy .sink -}}
{{- $auth := include "stadtlink.sinkAuth" (dict "auth" $s.auth) | fromJson -}}
{{- $_ := unset $s "auth" -}}
{{- $authCfg := include "stadtlink.authConfig" (dict "auth" $auth "dir" (include "stadtlink.sinkAuthDir" .i)) | fromJson -}}
{{- if $authCfg -}}{{- $_ := set $s "auth" $authCfg -}}{{- end -}}
{{- if and (not $s.context) (has ($s.kind | default "orion-ld") (list "orion-ld" "scorpio" "stellio")) -}}
{{- with (include "stadtlink.contextURL" .root) -}}{{- $_ := set $s "context" . -}}{{- end -}}
{{- end -}}
{{- toJson $s -}}
{{- end -}}

{{/* The whole config file of one adapter shard, as YAML: the adapter's `config` plus what the chart
     owns (adapter, http, outbox kind/url/prefix, broker url/tenant/context/auth defaults -- or the
     brokers list, each sink's auth from its own Secret --, the registry files) and, with shards > 1,
     only this shard's targets of each pull source.
     Args: dict "root" $ "name" name "a" adapter "shard" i "shards" n */}}
{{- define "stadtlink.adapterConfig" -}}
{{- $root := .root -}}{{- $a := .a -}}{{- $shard := int .shard -}}{{- $shards := int .shards -}}
{{- $cfg := deepCopy ($a.config | default dict) -}}
{{- $_ := set $cfg "adapter" .name -}}
{{- if not $cfg.namespace -}}{{- $_ := set $cfg "namespace" $root.Values.entityNamespace -}}{{- end -}}
{{- $sinks := include "stadtlink.sinks" (dict "root" $root "name" .name "a" $a) | fromJson -}}
{{- if $sinks.list -}}
{{- $out := list -}}
{{- range $i, $s := $sinks.list -}}
{{- $out = append $out (include "stadtlink.sinkConfig" (dict "root" $root "sink" $s "i" $i) | fromJson) -}}
{{- end -}}
{{- $_ := unset $cfg "broker" -}}
{{- $_ := set $cfg "brokers" $out -}}
{{- else -}}
{{- $broker := dict "url" $root.Values.broker.url -}}
{{- with $root.Values.broker.kind -}}{{- $_ := set $broker "kind" . -}}{{- end -}}
{{- with $root.Values.broker.tenant -}}{{- $_ := set $broker "tenant" . -}}{{- end -}}
{{- with (include "stadtlink.contextURL" $root) -}}{{- $_ := set $broker "context" . -}}{{- end -}}
{{- $auth := include "stadtlink.effectiveAuth" (dict "root" $root "a" $a) | fromJson -}}
{{- $authCfg := include "stadtlink.authConfig" (dict "auth" $auth "dir" "/var/run/secrets/stadtlink/broker-auth") | fromJson -}}
{{- if $authCfg -}}{{- $_ := set $broker "auth" $authCfg -}}{{- end -}}
{{- $_ := set $cfg "broker" (mustMergeOverwrite $broker ($cfg.broker | default dict)) -}}
{{- end -}}
{{- $outbox := dict "kind" $root.Values.outbox.kind "key_prefix" (default (include "stadtlink.fullname" $root) $root.Values.outbox.keyPrefix) -}}
{{- if and (eq $root.Values.outbox.kind "redis") (not (include "stadtlink.redisInChart" $root)) $root.Values.redis.external.url -}}
{{- $_ := set $outbox "url" $root.Values.redis.external.url -}}
{{- end -}}
{{- $_ := set $cfg "outbox" (mustMergeOverwrite $outbox ($cfg.outbox | default dict)) -}}
{{- $_ := set $cfg "http" (dict "enabled" true "host" "0.0.0.0" "port" $root.Values.httpPort) -}}
{{- $files := $cfg.registry_files | default list -}}
{{- range $file, $_ := ($a.registryFiles | default dict) -}}{{- $files = append $files $file -}}{{- end -}}
{{- if $files -}}{{- $_ := set $cfg "registry_files" ($files | uniq) -}}{{- end -}}
{{- if include "stadtlink.podNameClientIds" (dict "root" $root "a" $a) -}}
{{- $sources := list -}}
{{- range $i, $s := $cfg.sources -}}
{{- if and (eq ($s.kind | toString) "mqtt") (not $s.client_id) (not $s.client_id_env) -}}
{{- $s = merge (dict "client_id_env" (include "stadtlink.mqttClientIdEnv" (dict "a" $a "i" $i))) $s -}}
{{- end -}}
{{- $sources = append $sources $s -}}
{{- end -}}
{{- $_ := set $cfg "sources" $sources -}}
{{- end -}}
{{- if gt $shards 1 -}}
{{- $sources := list -}}
{{- range $cfg.sources -}}
{{- if has (.kind | toString) (list "http-poll" "modbus") -}}
{{- $mine := list -}}
{{- range $i, $t := .targets -}}{{- if eq (mod $i $shards) $shard -}}{{- $mine = append $mine $t -}}{{- end -}}{{- end -}}
{{- if $mine -}}{{- $sources = append $sources (merge (dict "targets" $mine) .) -}}{{- end -}}
{{- else -}}
{{- $sources = append $sources . -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "sources" $sources -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Name of one shard's objects: <adapter name> or <adapter name>-<i> when sharded. */}}
{{- define "stadtlink.shardName" -}}
{{- if gt (int .shards) 1 -}}
{{- printf "%s-%d" (include "stadtlink.adapterName" .) (int .shard) -}}
{{- else -}}
{{- include "stadtlink.adapterName" . -}}
{{- end -}}
{{- end -}}

{{- define "stadtlink.adapterSelectorLabels" -}}
{{ include "stadtlink.selectorLabels" .root }}
app.kubernetes.io/component: adapter
stadtlink.io/adapter: {{ .name | quote }}
{{- end -}}
