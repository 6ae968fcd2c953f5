"""Render the Hookline Helm chart and validate what it renders.

For the default values and each file in deploy/scenarios/, the script runs
`helm lint --strict` and `helm template`, then checks every manifest:

- Kubernetes kinds against the Kubernetes JSON schemas bundled with
  kubernetes-validate (strict: unknown fields fail), for the oldest Kubernetes
  version the chart supports and the newest that the package bundles;
- KEDA's ScaledObject and TriggerAuthentication against the schemas in
  deploy/schemas/;
- the wiring that no schema sees (see check_wiring);
- each container's configuration with `hookline config check`, run with the
  container's arguments and environment and stand-in secret files.

It also renders values that the chart must reject, and feeds the validators
broken manifests that they must reject, so that a validator that accepts
everything is noticed.
"""

import argparse
import copy
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

DEPLOY = Path(__file__).resolve().parent
REPOSITORY = DEPLOY.parent
CHART = DEPLOY / "helm" / "hookline"
SCENARIOS = DEPLOY / "scenarios"
CONFIG_SOURCE = REPOSITORY / "crates" / "hookline" / "src" / "config.rs"
RELEASE = "hl"
NAMESPACE = "hookline"
# The chart's kubeVersion floor, and the newest version kubernetes-validate bundles.
KUBERNETES_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version()]
KEDA_SCHEMAS = {
    "ScaledObject": DEPLOY / "schemas" / "keda-scaledobject.json",
    "TriggerAuthentication": DEPLOY / "schemas" / "keda-triggerauthentication.json",
}
SECRET_MOUNT = "/etc/hookline/secrets"
# Stand-ins for the secret files in `hookline config check`, by file name.
STAND_IN_SECRETS = {
    "admin-token": "stand-in-admin-token",
    "storage-url": "postgres://hookline:stand-in@127.0.0.1:5432/hookline",
    "queue-url": "amqp://hookline:stand-in@127.0.0.1:5672/%2f",
    "redis-url": "redis://127.0.0.1:6379",
    "gateway-token": "stand-in-gateway-token",
    "directory-access-token": "stand-in-3scale-token",
    "kafka-sasl-password": "stand-in-kafka-password",
}
# Values that the chart must reject, with a part of the expected message.
REJECTED_VALUES = [
    (
        "creator autoscaling without topics",
        ["--set", "kafka.brokers=kafka:9092"],
        "kafka.topics must list the product topics",
    ),
    (
        "creator autoscaling without a partition count",
        ["--set", "kafka.brokers=kafka:9092", "--set", "kafka.topics={orders}"],
        "kafka.partitions",
    ),
    (
        "chart-created Secret without values",
        ["--set", "secret.create=true"],
        "secret.values.adminToken is required",
    ),
    (
        "a Kafka SASL password without its value",
        ["--set", "secret.create=true", "--set", "secret.values.adminToken=t",
         "--set", "secret.values.storageUrl=postgres://h", "--set", "secret.values.queueUrl=amqp://h",
         "--set", "secret.values.redisUrl=redis://h", "--set", "secret.values.gatewayToken=t",
         "--set", "kafka.saslPassword=true"],
        "secret.values.kafkaSaslPassword is required",
    ),
    (
        "a configuration value that is not a section",
        ["--set", "config.log=json"],
        "at '/config/log': got string, want object",
    ),
    (
        "a configuration value that TOML cannot write",
        ["--set-json", "config.delivery.allowed_networks=[null]"],
        "config.delivery.allowed_networks: unsupported value",
    ),
    (
        "a misspelt value",
        ["--set", "kafka.partition=6"],
        "additional properties 'partition' not allowed",
    ),
    (
        "a partition count of 0",
        ["--set", "kafka.partitions=0"],
        "minimum",
    ),
    (
        "an unknown RabbitMQ protocol",
        ["--set", "dispatcher.autoscaling.protocol=amqps"],
        "dispatcher.autoscaling.protocol must be amqp or http",
    ),
]


class CheckFailure(Exception):
    """A rendered manifest, or the chart's behaviour, is wrong."""


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, **options)


def helm_arguments(values_file: Path | None) -> list[str]:
    return ["--values", str(values_file)] if values_file else []


def render(helm: str, extra: list[str]) -> list[dict]:
    command = [
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
        "--kube-version", KUBERNETES_VERSIONS[0], *extra,
    ]
    result = run(command)
    if result.returncode != 0:
        raise CheckFailure(f"helm template {' '.join(extra)} failed:\n{result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def lint(helm: str, extra: list[str]) -> None:
    result = run([helm, "lint", "--strict", str(CHART), *extra])
    if result.returncode != 0:
        raise CheckFailure(f"helm lint {' '.join(extra)} failed:\n{result.stdout}{result.stderr}")


def merged_values(values_file: Path | None) -> dict:
    """Merge the scenario's values over the chart's, as Helm does."""

    def merge(base: dict, override: dict) -> dict:
        result = copy.deepcopy(base)
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(result.get(key), dict):
                result[key] = merge(result[key], value)
            else:
                result[key] = copy.deepcopy(value)
        return result

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    if values_file:
        values = merge(values, yaml.safe_load(values_file.read_text()) or {})
    return values


def name_of(document: dict) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def validate_kubernetes(document: dict) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(part) for part in error.path)
            raise CheckFailure(
                f"{name_of(document)} is invalid for Kubernetes {version} at {path}: {error.message}"
            ) from None


def validate_keda(document: dict, validators: dict) -> None:
    errors = sorted(validators[document["kind"]].iter_errors(document), key=str)
    if errors:
        details = "; ".join(
            f"{'/'.join(str(part) for part in error.path)}: {error.message}" for error in errors
        )
        raise CheckFailure(f"{name_of(document)} does not match the KEDA schema: {details}")


def validate_document(document: dict, validators: dict) -> None:
    if document["kind"] in validators:
        validate_keda(document, validators)
    else:
        validate_kubernetes(document)


def secret_keys() -> set[str]:
    """Read from config.rs the keys whose value may come from a HOOKLINE_<KEY>_FILE file."""
    match = re.search(r"const SECRET_KEYS: \[&str; \d+\] =\s*\[([^\]]*)\]", CONFIG_SOURCE.read_text())
    if not match:
        raise CheckFailure(f"SECRET_KEYS not found in {CONFIG_SOURCE}")
    return set(re.findall(r'"([a-z_.]+)"', match.group(1)))


def pod_templates(documents: list[dict]) -> list[tuple[str, dict, dict]]:
    """Return (component, pod template metadata, pod spec) of every Deployment and Job."""
    templates = []
    for document in documents:
        if document["kind"] in ("Deployment", "Job"):
            template = document["spec"]["template"]
            component = template["metadata"]["labels"]["app.kubernetes.io/component"]
            templates.append((component, template["metadata"], template["spec"]))
    return templates


def by_kind(documents: list[dict], kind: str) -> dict[str, dict]:
    return {document["metadata"]["name"]: document for document in documents if document["kind"] == kind}


def config_toml(documents: list[dict]) -> dict:
    (config_map,) = by_kind(documents, "ConfigMap").values()
    return tomllib.loads(config_map["data"]["config.toml"])


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailure(message)


def check_pods(documents: list[dict], values: dict) -> None:
    """Check the probes, ports, arguments, secret files, security and resources of every pod."""
    config = config_toml(documents)
    listen_port = int(config["api"]["listen"].rsplit(":", 1)[1])
    allowed_variables = {
        "HOOKLINE_" + key.upper().replace(".", "__") + "_FILE" for key in secret_keys()
    }
    secret_name = values["secret"]["name"] or f"{RELEASE}-hookline"
    for component, metadata, spec in pod_templates(documents):
        where = f"pod of {component}"
        (container,) = spec["containers"]
        arguments = container["args"]
        expect(arguments[-1] == component, f"{where} runs {arguments[-1]!r}")
        expect(arguments[0] == "--config", f"{where}: arguments {arguments}")
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        config_volume = next(name for name, path in mounts.items() if arguments[1].startswith(path + "/"))
        expect("configMap" in volumes[config_volume], f"{where}: --config is not on the ConfigMap")
        expect(mounts.get("secrets") == SECRET_MOUNT, f"{where}: secrets not at {SECRET_MOUNT}")
        expect(volumes["secrets"]["secret"]["secretName"] == secret_name, f"{where}: wrong Secret")

        for variable in container["env"]:
            if variable["name"].endswith("_FILE") and variable["name"].startswith("HOOKLINE_"):
                expect(
                    variable["name"] in allowed_variables,
                    f"{where}: {variable['name']} names no secret key of config.rs",
                )
                expect(variable["value"].startswith(SECRET_MOUNT + "/"), f"{where}: {variable['name']} outside the Secret")

        security = container["securityContext"]
        expect(spec["securityContext"].get("runAsNonRoot") is True, f"{where} may run as root")
        expect(security.get("readOnlyRootFilesystem") is True, f"{where} has a writable root")
        expect(security.get("allowPrivilegeEscalation") is False, f"{where} allows privilege escalation")
        expect(security["capabilities"]["drop"] == ["ALL"], f"{where} keeps capabilities")
        for bound in ("requests", "limits"):
            expect(
                {"cpu", "memory"} <= set(container["resources"].get(bound, {})),
                f"{where} lacks cpu and memory {bound}",
            )
        if component == "migrate":
            continue

        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        expect(ports.get("http") == listen_port, f"{where}: port http is not api.listen's {listen_port}")
        probes = {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe, path in probes.items():
            action = container[probe]["httpGet"]
            expect(action == {"path": path, "port": "http"}, f"{where}: {probe} is {action}")
        annotations = metadata["annotations"]
        if values["metrics"]["podAnnotations"]:
            expect(annotations.get("prometheus.io/scrape") == "true", f"{where} is not scraped")
            expect(annotations.get("prometheus.io/port") == str(listen_port), f"{where}: scrape port")
            expect(annotations.get("prometheus.io/path") == "/metrics", f"{where}: scrape path")
        grace = int(config["shutdown"]["grace"].removesuffix("s"))
        expect(spec["terminationGracePeriodSeconds"] > grace, f"{where}: termination grace within shutdown.grace")
        if component == "gateway":
            expect(ports.get("gateway") == values["gateway"]["listenPort"], f"{where}: gateway port")


def check_scaling(documents: list[dict], values: dict) -> None:
    """Check that ScaledObjects target Deployments without fixed replicas and use the configured names."""
    config = config_toml(documents)
    deployments = by_kind(documents, "Deployment")
    authentications = by_kind(documents, "TriggerAuthentication")
    scaled_objects = by_kind(documents, "ScaledObject")
    secrets_used = {
        volume["secret"]["secretName"]
        for _, _, spec in pod_templates(documents)
        for volume in spec["volumes"]
        if "secret" in volume
    }
    for name, scaled in scaled_objects.items():
        target = deployments.get(scaled["spec"]["scaleTargetRef"]["name"])
        expect(target is not None, f"ScaledObject {name} targets no Deployment of the chart")
        expect("replicas" not in target["spec"], f"Deployment of {name} fixes replicas that KEDA owns")
        for trigger in scaled["spec"]["triggers"]:
            reference = trigger.get("authenticationRef")
            if reference:
                expect(reference["name"] in authentications, f"{name}: no TriggerAuthentication {reference['name']}")
            metadata = trigger["metadata"]
            if trigger["type"] == "kafka":
                expect(metadata["bootstrapServers"] == config["kafka"]["brokers"], f"{name}: brokers differ")
                expect(metadata["consumerGroup"] == config["kafka"]["group_id"], f"{name}: consumer group differs")
                expect(metadata["offsetResetPolicy"] == "earliest", f"{name}: the creator starts at earliest")
                maximum = values["kafka"]["partitions"]
                expect(scaled["spec"]["maxReplicaCount"] == maximum, f"{name}: maxReplicaCount is not kafka.partitions")
                expect(metadata["allowIdleConsumers"] == "false", f"{name}: replicas beyond partitions")
            if trigger["type"] == "rabbitmq":
                expect(metadata["queueName"] == config["queue"]["name"], f"{name}: queue name differs")
        component = target["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
        minimum = values[component]["autoscaling"]["minReplicas"]
        expect(scaled["spec"]["minReplicaCount"] == minimum, f"{name}: minReplicaCount is not {minimum}")
    for name, authentication in authentications.items():
        for reference in authentication["spec"]["secretTargetRef"]:
            expect(reference["name"] in secrets_used, f"{name} reads a Secret that no pod mounts")
    created = by_kind(documents, "Secret")
    for secret in created.values():
        keys = set(secret["stringData"])
        for authentication in authentications.values():
            for reference in authentication["spec"]["secretTargetRef"]:
                expect(reference["key"] in keys, f"Secret lacks {reference['key']} that KEDA reads")
        for _, _, spec in pod_templates(documents):
            for variable in spec["containers"][0]["env"]:
                if variable["name"].endswith("_FILE"):
                    key = variable["value"].rsplit("/", 1)[1]
                    expect(key in keys, f"Secret lacks {key} that {variable['name']} reads")


def check_network_policies(documents: list[dict], values: dict) -> None:
    """Check that each part has one policy and only the part that sends webhooks reaches the internet."""
    policies = by_kind(documents, "NetworkPolicy")
    components = {component for component, _, _ in pod_templates(documents)}
    if not values["networkPolicy"]["enabled"]:
        expect(not policies, "NetworkPolicies rendered while disabled")
        return
    selected = {
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]: policy
        for policy in policies.values()
    }
    expect(components == set(selected), f"parts {components} but policies for {set(selected)}")
    sender = "gateway" if values["gateway"]["enabled"] else "dispatcher"
    for component, policy in selected.items():
        expect(policy["spec"]["policyTypes"] == ["Egress"], f"policy of {component} types")
        open_blocks = [
            peer["ipBlock"]
            for rule in policy["spec"]["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer and peer["ipBlock"]["cidr"] in ("0.0.0.0/0", "::/0")
        ]
        if component == sender:
            expect(len(open_blocks) == 2, f"{component} cannot reach the internet")
            expect(all(block.get("except") for block in open_blocks), f"{component} reaches private ranges")
        else:
            expect(not open_blocks, f"{component} reaches the internet")
        expect(
            all(rule.get("to") for rule in policy["spec"]["egress"]),
            f"policy of {component} has a rule without peers, which allows every destination",
        )


def check_budgets_and_job(documents: list[dict], values: dict) -> None:
    deployments = by_kind(documents, "Deployment")
    for name, budget in by_kind(documents, "PodDisruptionBudget").items():
        selector = budget["spec"]["selector"]["matchLabels"]
        matches = [
            deployment
            for deployment in deployments.values()
            if selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        ]
        expect(len(matches) == 1, f"PodDisruptionBudget {name} selects {len(matches)} Deployments")
    jobs = by_kind(documents, "Job")
    expect(bool(jobs) == values["migration"]["enabled"], "migration Job presence")
    for name, job in jobs.items():
        hooks = job["metadata"]["annotations"]["helm.sh/hook"].split(",")
        expect("pre-upgrade" in hooks, f"{name} does not run before upgrades")
        expect(job["spec"]["template"]["spec"]["restartPolicy"] == "Never", f"{name} restart policy")


def check_wiring(documents: list[dict], values: dict) -> None:
    check_pods(documents, values)
    check_scaling(documents, values)
    check_network_policies(documents, values)
    check_budgets_and_job(documents, values)


def check_config_loads(documents: list[dict], hookline: Path) -> int:
    """Run `hookline config check` with each container's arguments and environment."""
    (config_map,) = by_kind(documents, "ConfigMap").values()
    rendered = config_toml(documents)
    checked = 0
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        config_file = root / "config.toml"
        config_file.write_text(config_map["data"]["config.toml"])
        for name, value in STAND_IN_SECRETS.items():
            (root / name).write_text(value + "\n")
        for component, _, spec in pod_templates(documents):
            (container,) = spec["containers"]
            environment = {"PATH": "/usr/bin:/bin"}
            for variable in container["env"]:
                value = variable["value"]
                if value.startswith(SECRET_MOUNT + "/"):
                    value = str(root / value.rsplit("/", 1)[1])
                environment[variable["name"]] = value
            arguments = ["--config", str(config_file), "config", "check"]
            result = run([str(hookline), *arguments], env=environment)
            if result.returncode != 0:
                raise CheckFailure(
                    f"hookline config check rejects the configuration of {component}:\n{result.stderr}"
                )
            effective = tomllib.loads(result.stdout)
            for section, key in (("api", "listen"), ("queue", "name"), ("kafka", "group_id")):
                expect(
                    effective[section][key] == rendered[section][key],
                    f"{component}: effective {section}.{key} differs from the ConfigMap",
                )
            expect(effective["storage"]["url"].startswith("postgres://"), f"{component}: storage.url not from its file")
            expect("stand-in@" not in effective["queue"]["url"], f"{component}: queue.url password not redacted")
            checked += 1
    return checked


def check_validators_reject(documents: list[dict], validators: dict) -> None:
    """Check that broken copies of rendered manifests fail validation."""
    deployment = copy.deepcopy(next(d for d in documents if d["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    scaled = next((copy.deepcopy(d) for d in documents if d["kind"] == "ScaledObject"), None)
    broken = [("unknown container field", deployment)]
    if scaled:
        scaled["spec"]["triggers"][0]["metadata"]["value"] = 500
        broken.append(("number in trigger metadata", scaled))
    for description, document in broken:
        try:
            validate_document(document, validators)
        except CheckFailure:
            continue
        raise CheckFailure(f"validation accepted a manifest with an {description}")


def check_rejected_values(helm: str) -> None:
    for description, extra, message in REJECTED_VALUES:
        try:
            render(helm, extra)
        except CheckFailure as failure:
            if message not in str(failure):
                raise CheckFailure(f"{description}: rejected with another message: {failure}") from None
            continue
        raise CheckFailure(f"{description}: helm template accepted {extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--helm", required=True, help="path of the helm binary")
    parser.add_argument("--hookline", type=Path, required=True, help="path of the hookline binary")
    parser.add_argument(
        "--only", type=Path, action="append", default=[],
        help="check only this values file (repeatable); default: the chart's values and every scenario",
    )
    arguments = parser.parse_args()

    validators = {}
    for kind, path in KEDA_SCHEMAS.items():
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        validators[kind] = jsonschema.Draft202012Validator(schema)

    scenarios = arguments.only or [None, *sorted(SCENARIOS.glob("*.yaml"))]
    manifests = 0
    try:
        for scenario in scenarios:
            label = scenario.name if scenario else "default values"
            extra = helm_arguments(scenario)
            lint(arguments.helm, extra)
            documents = render(arguments.helm, extra)
            for document in documents:
                validate_document(document, validators)
            values = merged_values(scenario)
            check_wiring(documents, values)
            configs = check_config_loads(documents, arguments.hookline)
            check_validators_reject(documents, validators)
            manifests += len(documents)
            kinds = sorted({document["kind"] for document in documents})
            print(f"{label}: {len(documents)} manifests valid ({', '.join(kinds)}); {configs} configurations load")
        check_rejected_values(arguments.helm)
    except CheckFailure as failure:
        print(f"deploy check failed: {failure}", file=sys.stderr)
        return 1
    print(
        f"deploy checks passed: {len(scenarios)} value sets, {manifests} manifests, "
        f"{len(REJECTED_VALUES)} invalid value sets rejected"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
