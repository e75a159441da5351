"""The Graph credential defaults in infra/main.bicep fit together for a first deployment.

Run by scripts/check-infra.sh (unittest, pycep from target/infra-venv). main.bicep is evaluated
as ARM would for the given parameter values, every other parameter taking its declared default
(bicep_eval.py with use_defaults), and the app settings it hands the function app are checked
against the handler's start-up rule: a plain managed identity cannot list invoices in Partner
Center, so it must not be deployed with INVOICE_DISCOVERY=partner-center and a billed kind, nor
with discovery off, a billed kind and no EXPORT_INVOICE_IDS.
"""

from __future__ import annotations

import pathlib
import unittest

import bicep_eval as be

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAIN = ROOT / "infra" / "main.bicep"

APP_ID = "0b9a8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d"
ALL_KINDS = "billedUsage,billedReconciliation,unbilledUsage,unbilledReconciliation"
UNBILLED_KINDS = "unbilledUsage,unbilledReconciliation"

_TREE = be.parse(MAIN)


def deploy(**given: str) -> dict:
    """The function app module's parameters for a deployment with `given` parameter values."""
    params = be.module_params(
        _TREE, "modules/functionapp.bicep", {k: [v] for k, v in given.items()}, use_defaults=True
    )
    return params


def settings(**given: str) -> dict[str, str | object]:
    """The handler's app settings (name -> value, be.UNKNOWN for resource properties)."""
    alternatives = deploy(**given)["handlerSettings"]
    assert len(alternatives) == 1 and isinstance(alternatives[0], dict), alternatives
    out = {}
    for name, values in alternatives[0].items():
        assert len(values) == 1, (name, values)  # every condition decided
        out[name] = values[0]
    return out


def output(name: str, **given: str) -> object:
    scope = be.Scope(_TREE, {k: [v] for k, v in given.items()}, use_defaults=True)
    values = be.evaluate(_TREE["outputs"][name]["value"], scope)
    assert len(values) == 1, (name, values)
    return values[0]


def startup_refusal(s: dict) -> str | None:
    """The handler's start-up rule for the single partner, as the contract states it."""
    billed = any(k.strip().startswith("billed") for k in s["EXPORT_KINDS"].split(","))
    if s["GRAPH_CREDENTIAL_KIND"] != "managed-identity" or not billed or s.get("PARTNERS"):
        return None
    if s["INVOICE_DISCOVERY"] == "partner-center":
        return "managed identity with invoice discovery"
    if not s.get("EXPORT_INVOICE_IDS"):
        return "discovery off without invoice ids"
    return None


class GraphDefaultsTest(unittest.TestCase):
    def test_app_registration_defaults_to_the_federated_credential_with_discovery(self):
        s = settings(graphClientId=APP_ID)
        self.assertEqual(s["GRAPH_CREDENTIAL_KIND"], "federated-managed-identity")
        self.assertEqual(s["GRAPH_CLIENT_ID"], APP_ID)
        self.assertEqual(s["INVOICE_DISCOVERY"], "partner-center")
        self.assertEqual(s["EXPORT_KINDS"], ALL_KINDS)
        self.assertIn("GRAPH_TENANT_ID", s)
        self.assertNotIn("GRAPH_CLIENT_SECRET", s)
        self.assertNotIn("GRAPH_CLIENT_CERTIFICATE", s)
        self.assertIsNone(startup_refusal(s))

    def test_federated_credential_runs_as_the_user_assigned_identity(self):
        # Entra accepts only a user-assigned identity as an app's federated credential, so the
        # template creates one even when appIdentity says system-assigned.
        for given in ({}, {"appIdentity": "system-assigned"}):
            params = deploy(graphClientId=APP_ID, **given)
            self.assertNotIn("", params["userAssignedIdentityId"], given)
            self.assertIn("AZURE_CLIENT_ID", settings(graphClientId=APP_ID, **given))

    def test_without_an_app_registration_the_managed_identity_exports_unbilled_only(self):
        s = settings()
        self.assertEqual(s["GRAPH_CREDENTIAL_KIND"], "managed-identity")
        self.assertEqual(s["INVOICE_DISCOVERY"], "off")
        self.assertEqual(s["EXPORT_KINDS"], UNBILLED_KINDS)
        self.assertNotIn("GRAPH_CLIENT_ID", s)
        self.assertNotIn("AZURE_CLIENT_ID", s)  # system-assigned
        self.assertIsNone(startup_refusal(s))
        self.assertEqual(deploy()["userAssignedIdentityId"], [""])

    def test_fixed_invoice_ids_keep_the_billed_kinds_for_the_managed_identity(self):
        s = settings(exportInvoiceIds="G016907411,G016907412")
        self.assertEqual(s["GRAPH_CREDENTIAL_KIND"], "managed-identity")
        self.assertEqual(s["INVOICE_DISCOVERY"], "off")
        self.assertEqual(s["EXPORT_KINDS"], ALL_KINDS)
        self.assertEqual(s["EXPORT_INVOICE_IDS"], "G016907411,G016907412")
        self.assertIsNone(startup_refusal(s))

    def test_explicit_partner_center_discovery_is_turned_off_for_the_managed_identity(self):
        s = settings(invoiceDiscovery="partner-center", exportKinds="billedUsage, unbilledUsage")
        self.assertEqual(s["INVOICE_DISCOVERY"], "off")
        self.assertEqual(s["EXPORT_KINDS"], "unbilledUsage")
        self.assertIsNone(startup_refusal(s))

    def test_only_billed_kinds_are_left_for_the_handler_to_refuse_with_its_fix(self):
        # Nothing sensible to deploy: the handler's start-up error names the fix.
        s = settings(exportKinds="billedReconciliation")
        self.assertEqual(s["EXPORT_KINDS"], "billedReconciliation")
        self.assertEqual(startup_refusal(s), "discovery off without invoice ids")

    def test_a_user_assigned_managed_identity_names_itself_for_graph(self):
        s = settings(appIdentity="user-assigned")
        self.assertEqual(s["GRAPH_CREDENTIAL_KIND"], "managed-identity")
        self.assertIn("AZURE_CLIENT_ID", s)
        self.assertIn("GRAPH_CLIENT_ID", s)
        self.assertIsNone(startup_refusal(s))

    def test_client_secret_keeps_discovery_and_its_key_vault_reference(self):
        uri = "https://kv.vault.azure.net/secrets/graph-app-secret"
        s = settings(graphClientId=APP_ID, graphCredentialKind="client-secret", graphClientSecretUri=uri)
        self.assertEqual(s["GRAPH_CREDENTIAL_KIND"], "client-secret")
        self.assertEqual(s["GRAPH_CLIENT_ID"], APP_ID)
        self.assertEqual(s["GRAPH_CLIENT_SECRET"], f"@Microsoft.KeyVault(SecretUri={uri})")
        self.assertEqual(s["INVOICE_DISCOVERY"], "partner-center")
        self.assertEqual(s["EXPORT_KINDS"], ALL_KINDS)
        self.assertNotIn("AZURE_CLIENT_ID", s)

    def test_a_partner_list_is_passed_on_as_given(self):
        partners = '{"partners": []}'
        s = settings(partners=partners)
        self.assertEqual(s["PARTNERS"], partners)
        self.assertEqual(s["INVOICE_DISCOVERY"], "partner-center")
        self.assertEqual(s["EXPORT_KINDS"], ALL_KINDS)

    def test_outputs_describe_the_federated_credential(self):
        self.assertEqual(output("federatedCredentialAudience"), "api://AzureADTokenExchange")
        self.assertEqual(
            output("federatedCredentialIssuer"),
            "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0",
        )
        credential = output("federatedCredential", graphClientId=APP_ID)
        self.assertEqual(set(credential), {"name", "issuer", "subject", "audiences", "description"})
        self.assertEqual(credential["audiences"], [["api://AzureADTokenExchange"]])
        self.assertEqual(output("effectiveInvoiceDiscovery"), "off")
        self.assertEqual(output("effectiveExportKinds", graphClientId=APP_ID), ALL_KINDS)
        self.assertEqual(output("graphCredentialKind", graphClientId=APP_ID), "federated-managed-identity")

    def test_host_storage_sku_reaches_the_account(self):
        main_params = be.module_params(_TREE, "modules/hoststorage.bicep", {}, use_defaults=True)
        self.assertEqual(main_params["sku"], ["Standard_ZRS"])
        lrs = be.module_params(
            _TREE, "modules/hoststorage.bicep", {"hostStorageSku": ["Standard_LRS"]}, use_defaults=True
        )
        self.assertEqual(lrs["sku"], ["Standard_LRS"])
        host = be.parse(ROOT / "infra" / "modules" / "hoststorage.bicep")
        account = host["resources"]["account"]["config"]
        self.assertEqual(account["sku"]["name"], "sku")


if __name__ == "__main__":
    unittest.main()
