"""A Flex Consumption site must carry only the site properties and app settings Flex accepts.

Run by scripts/check-infra.sh (with the pycep parser from target/infra-venv):
    target/infra-venv/bin/python -m unittest discover -s tests/infra -t tests/infra

The Bicep files are parsed with pycep and evaluated for hostingPlan=flex (bicep_eval.py); every
other parameter is left undecided, so both branches of each credential/identity switch are
checked. A property or app setting from the lists below that can reach a Flex site fails the test.
"""

from __future__ import annotations

import copy
import pathlib
import unittest

import bicep_eval as be

ROOT = pathlib.Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"

# "Flex Consumption plan deprecations" in the Azure Functions app settings reference:
#   https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations
# (also linked from https://learn.microsoft.com/azure/azure-functions/flex-consumption-plan#deprecated-properties-and-settings).
# ARM rejects at least ftpsState and linuxFxVersion outright, even empty (error 51021, "The
# following list of ... site configuration properties (Site.SiteConfig.FtpsState,
# Site.SiteConfig.LinuxFxVersion) for Flex Consumption sites is invalid"; reported in
# https://github.com/Azure/terraform-azurerm-avm-res-web-site/issues/283).
# Site properties, matched case-insensitively on `properties` and `properties.siteConfig`:
FLEX_UNSUPPORTED_SITE_PROPERTIES = {
    "ftpsState": "FTPS not supported",
    "use32BitWorkerProcess": "32-bit not supported",
    "isReserved": "not valid",
    "IsXenon": "not valid",
    "windowsFxVersion": "not valid",
    "alwaysOn": "not valid",
    "preWarmedInstanceCount": "replaced by always-ready instances",
    "functionAppScaleLimit": "renamed functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
    "containerSize": "renamed functionAppConfig.scaleAndConcurrency.instanceMemoryMB",
    "javaVersion": "replaced by functionAppConfig.runtime.version",
    "powerShellVersion": "replaced by functionAppConfig.runtime.version",
    "netFrameworkVersion": "replaced by functionAppConfig.runtime.version",
    "linuxFxVersion": "replaced by functionAppConfig.runtime",
    "vnetRouteAllEnabled": "not used for networking in Flex Consumption",
}
# App settings (same table, same URL):
FLEX_UNSUPPORTED_APP_SETTINGS = {
    "FUNCTIONS_EXTENSION_VERSION": "set by the backend",
    "FUNCTIONS_WORKER_RUNTIME": "replaced by functionAppConfig.runtime.name",
    "FUNCTIONS_WORKER_RUNTIME_VERSION": "replaced by functionAppConfig.runtime.version",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY": "replaced by functionAppConfig.scaleAndConcurrency triggers",
    "FUNCTIONS_WORKER_PROCESS_COUNT": "not valid",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED": "not valid",
    "WEBSITE_NODE_DEFAULT_VERSION": "replaced by functionAppConfig.runtime.version",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING": "replaced by functionAppConfig.deployment",
    "WEBSITE_CONTENTSHARE": "replaced by functionAppConfig.deployment",
    "WEBSITE_CONTENTOVERVNET": "not used for networking in Flex Consumption",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION": "no content share in Flex Consumption",
    "WEBSITE_RUN_FROM_PACKAGE": "not used for deployments in Flex Consumption (functionAppConfig.deployment)",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT": "replaced by functionAppConfig.scaleAndConcurrency.maximumInstanceCount",
    "WEBSITE_VNET_ROUTE_ALL": "not used for networking in Flex Consumption",
    "WEBSITE_DNS_SERVER": "DNS comes from the integrated virtual network",
    "SCM_DO_BUILD_DURING_DEPLOYMENT": "replaced by the remoteBuild deployment option",
    "ENABLE_ORYX_BUILD": "replaced by the remoteBuild deployment option",
    "WEBSITE_TIME_ZONE": "not supported on Flex Consumption",
    "TZ": "not supported on Flex Consumption",
    "WEBSITES_CONTAINER_START_TIME_LIMIT": "not supported on Flex Consumption",
    "WEBSITE_MOUNT_ENABLED": "no content mount in Flex Consumption",
    "WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED": "not valid",
    # Project rule, not in the table: only meaningful together with WEBSITE_RUN_FROM_PACKAGE
    # (https://learn.microsoft.com/azure/azure-functions/run-functions-from-deployment-package).
    "WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID": "only used with WEBSITE_RUN_FROM_PACKAGE",
}

_PROPS = {k.lower(): k for k in FLEX_UNSUPPORTED_SITE_PROPERTIES}
_SETTINGS = {k.upper(): k for k in FLEX_UNSUPPORTED_APP_SETTINGS}


def _dicts(alternatives):
    return [a for a in alternatives if isinstance(a, dict)]


def _may_be_flex(properties: dict) -> bool:
    config = properties.get("functionAppConfig", [None])
    return any(isinstance(a, dict) or a is be.UNKNOWN for a in config)


def app_setting_names(site_config: dict) -> tuple[set, bool]:
    """Names that may be in siteConfig.appSettings, and whether some name was unresolvable."""
    names, unresolved = set(), False
    for alternative in site_config.get("appSettings", []):
        if not isinstance(alternative, list):
            unresolved = True
            continue
        for element in alternative:
            if not isinstance(element, dict):
                unresolved = True
                continue
            for name in element.get("name", [be.UNKNOWN]):
                if isinstance(name, str):
                    names.add(name)
                else:
                    unresolved = True
    return names, unresolved


def flex_violations(site_name: str, body: dict) -> list[str]:
    """What a Flex site must not carry; empty when `body` is not (possibly) a Flex site."""
    problems = []
    for properties in _dicts(body.get("properties", [])):
        if not _may_be_flex(properties):
            continue
        for key in properties:
            if key.lower() in _PROPS:
                problems.append(f"{site_name}: properties.{key} ({FLEX_UNSUPPORTED_SITE_PROPERTIES[_PROPS[key.lower()]]})")
        for site_config in properties.get("siteConfig", []):
            if site_config is None:
                continue
            if not isinstance(site_config, dict):
                problems.append(f"{site_name}: siteConfig cannot be resolved statically")
                continue
            for key in site_config:
                if key.lower() in _PROPS:
                    problems.append(f"{site_name}: siteConfig.{key} ({FLEX_UNSUPPORTED_SITE_PROPERTIES[_PROPS[key.lower()]]})")
            names, unresolved = app_setting_names(site_config)
            for name in sorted(names):
                if name.upper() in _SETTINGS:
                    problems.append(f"{site_name}: app setting {name} ({FLEX_UNSUPPORTED_APP_SETTINGS[_SETTINGS[name.upper()]]})")
            if unresolved:
                problems.append(f"{site_name}: an app setting name cannot be resolved statically")
    return sorted(set(problems))


def function_app_sites(hosting_plan: str, tree: dict | None = None) -> list[tuple[str, dict]]:
    """The function app module's site(s), evaluated with main.bicep's values for the module."""
    main = be.parse(INFRA / "main.bicep")
    params = be.module_params(main, "modules/functionapp.bicep", {"hostingPlan": [hosting_plan]})
    if tree is None:
        tree = be.parse(INFRA / "modules" / "functionapp.bicep")
    return be.sites(tree, params)


class FlexSiteTest(unittest.TestCase):
    def test_flex_site_carries_nothing_flex_rejects(self):
        sites = function_app_sites("flex")
        self.assertTrue(sites, "no Microsoft.Web/sites in functionapp.bicep")
        for name, body in sites:
            self.assertTrue(any(_may_be_flex(p) for p in _dicts(body["properties"])), "hostingPlan=flex must yield a Flex site")
            self.assertEqual(flex_violations(name, body), [])

    def test_flex_site_gets_the_identity_based_settings(self):
        # Guards against a vacuous pass: the evaluator must see the real settings.
        expected = {
            "AzureWebJobsStorage__accountName",
            "AzureWebJobsStorage__credential",
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ServiceBusConnection__credential",
            "APPLICATIONINSIGHTS_CONNECTION_STRING",
            "BILLED_SCHEDULE",
            "UNBILLED_SCHEDULE",
            "AZURE_CREDENTIAL_KIND",
            "GRAPH_CREDENTIAL_KIND",
        }
        for _, body in function_app_sites("flex"):
            for properties in _dicts(body["properties"]):
                for site_config in _dicts(properties["siteConfig"]):
                    names, unresolved = app_setting_names(site_config)
                    self.assertFalse(unresolved)
                    self.assertLessEqual(expected, names)
                    self.assertEqual(set(site_config), {"appSettings"}, "Flex siteConfig holds app settings only")

    def test_every_other_plan_is_not_checked_as_flex(self):
        for name, body in function_app_sites("premium"):
            self.assertEqual(flex_violations(name, body), [])
            for properties in _dicts(body["properties"]):
                self.assertFalse(_may_be_flex(properties))
                for site_config in _dicts(properties["siteConfig"]):
                    names, _ = app_setting_names(site_config)
                    self.assertIn("WEBSITE_RUN_FROM_PACKAGE", names)
                    self.assertIn("linuxFxVersion", site_config)

    def test_rejects_linux_fx_version_injected_into_the_flex_site(self):
        tree = be.parse(INFRA / "modules" / "functionapp.bicep")
        mutated = copy.deepcopy(tree)
        mutated["variables"]["flexSiteConfig"]["value"]["linuxFxVersion"] = ""
        problems = [p for name, body in function_app_sites("flex", mutated) for p in flex_violations(name, body)]
        self.assertTrue(any("siteConfig.linuxFxVersion" in p for p in problems), problems)

    def test_rejects_a_premium_setting_leaking_to_flex(self):
        tree = be.parse(INFRA / "modules" / "functionapp.bicep")
        mutated = copy.deepcopy(tree)
        # premiumSettings = isFlex ? {} : {...}  ->  always the Premium object
        ternary = mutated["variables"]["premiumSettings"]["value"]["operator"]["operands"]
        ternary["true_value"] = ternary["false_value"]
        problems = [p for name, body in function_app_sites("flex", mutated) for p in flex_violations(name, body)]
        for setting in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
            self.assertTrue(any(f"app setting {setting} " in p for p in problems), (setting, problems))

    def test_rejects_the_fixture_flex_site(self):
        tree = be.parse(FIXTURES / "flex_site_with_linuxfx.bicep")
        problems = [p for name, body in be.sites(tree, {}) for p in flex_violations(name, body)]
        self.assertIn("site: siteConfig.linuxFxVersion (replaced by functionAppConfig.runtime)", problems)
        self.assertIn("site: siteConfig.ftpsState (FTPS not supported)", problems)
        self.assertTrue(any("app setting FUNCTIONS_WORKER_RUNTIME " in p for p in problems), problems)
        self.assertTrue(any("app setting WEBSITE_CONTENTSHARE " in p for p in problems), problems)
        # The same shapes on a site without functionAppConfig (not Flex) are fine.
        tree["resources"]["site"]["config"]["properties"].pop("functionAppConfig")
        self.assertEqual([p for name, body in be.sites(tree, {}) for p in flex_violations(name, body)], [])


if __name__ == "__main__":
    unittest.main()
