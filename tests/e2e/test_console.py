"""The web console in a real browser (headless Chromium driven by Selenium): the URL
flytekit prints opens the execution's page; the graph shows node phases, the map task's
item counts and the failure; a running node turns green without a reload; logs stream;
terminate, relaunch, gate approval and the launch form work from the page.

Screenshots are kept under target/console-screenshots/ (CI keeps them as artifacts)."""
import os
import pathlib
import shutil
import subprocess
import urllib.request

import pytest

from conftest import DOMAIN, PROJECT, REPO, execute, finish, register_module, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
SHOTS = REPO / "target" / "console-screenshots"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs chromium and chromedriver (Debian: chromium chromium-driver); CI installs them",
)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "chromium and chromedriver must be installed in CI"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def version(config, tmp_path_factory):
    return register_module(config, tmp_path_factory, "console")


def base(server):
    return f"http://127.0.0.1:{server.port}"


def exec_url(server, name):
    return f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/executions/{name}"


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def wait_css(driver, selector, what, deadline=30, cond=lambda els: els):
    return wait_until(lambda: cond(css(driver, selector)), deadline, what)


def click(driver, selector, what="an element"):
    """Clicks the first match, again if the page redrew it meanwhile (it refreshes live)."""
    return wait_until(lambda: css(driver, selector)[0].click() or True, 30, f"click {what}")


def text_of(driver, selector):
    return " ".join(e.text for e in css(driver, selector))


def node_phase(driver, node_id):
    els = css(driver, f'g.node[data-node-id="{node_id}"]')
    return els[0].get_attribute("data-phase") if els else None


def shot(driver, name):
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_the_url_pyflyte_prints_opens_the_execution_page(config, server, version, browser, tmp_path):
    """`pyflyte run --remote` prints a console URL; opened, it shows that execution."""
    from conftest import E2E_WORKFLOWS, PYFLYTE, task_env

    shutil.copy(E2E_WORKFLOWS / "console.py", tmp_path / "console.py")
    out = subprocess.run([PYFLYTE, "-c", str(config), "run", "--remote", "--project", PROJECT, "--domain", DOMAIN,
                          "console.py", "square_wf", "--x", "6"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, env=task_env())
    assert out.returncode == 0, out.stdout + out.stderr
    url = next(w for w in out.stdout.split() if "/console/projects/" in w)
    assert url.startswith("http://") and f"/projects/{PROJECT}/domains/{DOMAIN}/executions/" in url, url
    # The printed host is the configured endpoint (localhost:<port>): the same server.
    browser.get(url)
    name = url.rstrip("/").rsplit("/", 1)[1]
    wait_css(browser, "#exec-name", "the execution page", cond=lambda els: els and els[0].text == name)
    wait_css(browser, "#exec-phase", "SUCCEEDED", 120, cond=lambda els: els and els[0].get_attribute("data-phase") == "SUCCEEDED")


def test_the_executions_list_filters_by_phase_and_pages(config, server, version, browser):
    r, ok = execute(config, version, "console.square_wf", x=3)
    r, bad = execute(config, version, "console.showcase_wf", x=3)
    finish(r, ok)
    finish(r, bad)
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/executions")
    rows = wait_css(browser, "#executions tr[data-execution]", "executions listed")
    names = [row.get_attribute("data-execution") for row in rows]
    assert ok.id.name in names and bad.id.name in names
    assert names.index(bad.id.name) < names.index(ok.id.name), "newest first"
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/executions?phase=FAILED")
    rows = wait_css(browser, "#executions tr[data-execution]", "failed executions")
    names = [row.get_attribute("data-execution") for row in rows]
    assert bad.id.name in names and ok.id.name not in names
    assert all(row.find_element("css selector", ".phase").text == "FAILED" for row in rows)
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/executions?workflow=console.square_wf")
    rows = wait_css(browser, "#executions tr[data-execution]", "square_wf executions")
    assert ok.id.name in [row.get_attribute("data-execution") for row in rows]
    assert bad.id.name not in [row.get_attribute("data-execution") for row in rows]
    shot(browser, "executions")


def test_an_execution_page_shows_the_graph_phases_map_counts_and_the_error(config, server, version, browser):
    r, ex = execute(config, version, "console.showcase_wf", x=3)
    finish(r, ex)
    browser.get(exec_url(server, ex.id.name))
    wait_css(browser, "#exec-phase", "FAILED", cond=lambda els: els and els[0].get_attribute("data-phase") == "FAILED")
    error = wait_css(browser, "#exec-error", "the execution error")[0].text
    assert "refusing 14" in error, error
    # The map task node (n0) succeeded with 3 items; the total (n1) succeeded; the branch failed.
    wait_until(lambda: node_phase(browser, "n0") == "SUCCEEDED", 20, "map node phase")
    counts = css(browser, 'g.node[data-node-id="n0"] text.phase-label')[0].get_attribute("data-counts")
    assert counts and '"SUCCEEDED":3' in counts.replace(" ", ""), counts
    assert node_phase(browser, "n1") == "SUCCEEDED"
    assert node_phase(browser, "n2") == "FAILED"
    # Expand the branch in place: the case that ran (explode) failed, the other was skipped.
    click(browser, '[data-toggle="n2"]', "the branch toggle")
    wait_until(lambda: node_phase(browser, "n2-n0") == "FAILED", 20, "the branch's case that ran")
    assert node_phase(browser, "n2-n1") == "SKIPPED"
    click(browser, 'g.node[data-node-id="n2-n0"]', "the failed case")
    err = wait_css(browser, "#node-error", "the node error")[0].text
    assert "USER" in err and "refusing 14" in err, err
    # The timeline has a bar per started node, and the attempts of task nodes.
    assert len(css(browser, '#gantt g[data-node-id]')) >= 3
    wait_css(browser, "#gantt rect.attempt", "attempt bars", cond=lambda els: len(els) >= 1)
    shot(browser, "execution-failed")
    # Inputs and outputs of the total node are shown readably.
    click(browser, 'g.node[data-node-id="n1"]', "the total node")
    wait_until(lambda: "14" in text_of(browser, '#node-panel tr[data-name="o0"]'), 20, "total's output")
    wait_until(lambda: all(str(v) in text_of(browser, '#node-panel tr[data-name="xs"]') for v in (1, 4, 9)),
               20, "total's list input")


def test_a_subworkflow_expands_in_place_and_a_cache_hit_links_to_its_producer(config, server, version, browser):
    r, nested = execute(config, version, "console.nested_wf", x=4)
    finish(r, nested)
    browser.get(exec_url(server, nested.id.name))
    wait_until(lambda: node_phase(browser, "n0") == "SUCCEEDED", 30, "the subworkflow node")
    assert css(browser, 'g.node[data-node-id="n0"]')[0].get_attribute("data-kind") == "subworkflow"
    click(browser, '[data-toggle="n0"]', "the subworkflow toggle")
    wait_until(lambda: [el for el in css(browser, 'g.node[data-node-id^="n0-"]')
                        if el.get_attribute("data-phase") == "SUCCEEDED" and el.get_attribute("data-kind") == "task"],
               20, "the subworkflow's task, in place")
    # Two runs of a cached task: the second node's cache hit links to the first execution.
    r, first = execute(config, version, "console.cached_wf", x=31)
    finish(r, first)
    r, second = execute(config, version, "console.cached_wf", x=31)
    finish(r, second)
    browser.get(exec_url(server, second.id.name))
    wait_until(lambda: node_phase(browser, "n0") == "SUCCEEDED", 30, "the cached node")
    click(browser, 'g.node[data-node-id="n0"]', "the cached node")
    wait_until(lambda: "CACHE_HIT" in text_of(browser, "#cache-status"), 20, "the cache status")
    links = [a.get_attribute("href") for a in css(browser, "#cache-status a")]
    assert any(link.endswith(f"/executions/{first.id.name}") for link in links), links


def test_a_running_node_turns_green_without_a_reload_and_its_log_streams(config, server, version, browser, tmp_path):
    release = tmp_path / "release"
    r, ex = execute(config, version, "console.chatty_wf", release=str(release))
    browser.get(exec_url(server, ex.id.name))
    wait_until(lambda: node_phase(browser, "n0") == "RUNNING", 120, "chatty running")
    click(browser, 'g.node[data-node-id="n0"]', "the running node")
    click(browser, '#node-panel button[data-log^="stdout"]', "the stdout log button")
    wait_until(lambda: "tick 3" in text_of(browser, "#log-view"), 60, "log lines streamed while running")
    seen = text_of(browser, "#log-view")
    # Lines keep arriving on the same response: nothing reloads.
    marker = browser.execute_script("window.__same_page = 1; return 1;")
    wait_until(lambda: len(text_of(browser, "#log-view")) > len(seen) + 10, 30, "more log lines")
    shot(browser, "running")
    release.write_text("go")
    wait_until(lambda: node_phase(browser, "n0") == "SUCCEEDED", 60, "chatty turns green")
    wait_until(lambda: "released" in text_of(browser, "#log-view"), 30, "the last log line")
    wait_until(lambda: css(browser, "#log-view")[0].get_attribute("data-complete") == "1", 30, "the log stream ended")
    fill = browser.execute_script(
        "return getComputedStyle(document.querySelector('g.node[data-node-id=\"n0\"] rect.box')).fill")
    assert fill.replace(" ", "") == "rgb(217,242,220)", fill
    assert browser.execute_script("return window.__same_page") == marker, "the page was reloaded"
    wait_css(browser, "#exec-phase", "SUCCEEDED", 60, cond=lambda els: els and els[0].get_attribute("data-phase") == "SUCCEEDED")
    finish(r, ex)


def test_terminate_and_relaunch_from_the_page(config, server, version, browser, tmp_path):
    r, ex = execute(config, version, "console.chatty_wf", release=str(tmp_path / "never"))
    browser.get(exec_url(server, ex.id.name))
    wait_until(lambda: node_phase(browser, "n0") in ("QUEUED", "RUNNING"), 120, "chatty started")
    browser.execute_script("window.confirm = () => true;")
    wait_css(browser, "#terminate", "the terminate button", cond=lambda els: els and els[0].is_enabled())
    click(browser, "#terminate", "terminate")
    wait_css(browser, "#exec-phase", "ABORTED", 60, cond=lambda els: els and els[0].get_attribute("data-phase") == "ABORTED")
    assert r.client.get_execution(ex.id).closure.phase == 7  # ABORTED, as gRPC sees it
    click(browser, "#relaunch", "relaunch")
    wait_until(lambda: "/executions/" in browser.current_url and ex.id.name not in browser.current_url, 30, "the relaunched page")
    new_name = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    wait_css(browser, "#exec-name", "the new execution", cond=lambda els: els and els[0].text == new_name)
    wait_until(lambda: node_phase(browser, "n0") in ("QUEUED", "RUNNING"), 120, "the relaunch runs")
    from flytekit.models.core.identifier import WorkflowExecutionIdentifier

    relaunched = r.client.get_execution(WorkflowExecutionIdentifier(PROJECT, DOMAIN, new_name))
    assert relaunched.spec.launch_plan.name == "console.chatty_wf"
    r.client.terminate_execution(relaunched.id, "test cleanup")


def test_a_gate_is_approved_from_the_page(config, server, version, browser):
    r, ex = execute(config, version, "console.approve_wf", x=5)
    browser.get(exec_url(server, ex.id.name))
    wait_css(browser, '[data-approve="ok-to-go"]', "the approve button", 120)
    shot(browser, "gate")
    click(browser, '[data-approve="ok-to-go"]', "approve")
    wait_css(browser, "#exec-phase", "SUCCEEDED", 120, cond=lambda els: els and els[0].get_attribute("data-phase") == "SUCCEEDED")
    done = finish(r, ex)
    assert done.outputs["o0"] == 25


def test_the_launch_form_checks_inputs_and_starts_an_execution(config, server, version, browser):
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/launch_plans/console.square_wf")
    field = wait_css(browser, '#launch-form [data-input="x"]', "the x input")[0]
    field.clear()
    field.send_keys("seven")
    css(browser, "#launch")[0].click()
    problem = wait_until(lambda: text_of(browser, '[data-problem="x"]'), 20, "the problem named")
    assert "x: expected an integer" in problem, problem
    assert "/launch_plans/" in browser.current_url, "nothing was submitted"
    field.clear()
    field.send_keys("7")
    shot(browser, "launch-form")
    css(browser, "#launch")[0].click()
    wait_until(lambda: "/executions/" in browser.current_url, 30, "the new execution's page")
    name = browser.current_url.rstrip("/").rsplit("/", 1)[1]
    wait_css(browser, "#exec-phase", "SUCCEEDED", 120, cond=lambda els: els and els[0].get_attribute("data-phase") == "SUCCEEDED")
    from flytekit.models.core.identifier import WorkflowExecutionIdentifier

    from conftest import remote

    r = remote(config)
    done = r.fetch_execution(name=name)
    assert r.wait(done).outputs["o0"] == 49


def test_registry_pages_show_versions_interfaces_and_the_graph(server, version, browser):
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/workflows/console.showcase_wf")
    wait_css(browser, "#versions a", "versions", cond=lambda els: any(e.text == version for e in els))
    wait_css(browser, "#graph g.node", "the workflow graph", cond=lambda els: len(els) >= 4)
    assert "int" in browser.find_element("css selector", "main").text
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/tasks")
    names = [e.text for e in wait_css(browser, "#entities a", "tasks")]
    assert "console.square" in names and "console.explode" in names
    browser.get(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/task/console.total/version/{version}")
    wait_until(lambda: "List[integer]" in browser.find_element("css selector", "main").text, 20, "the typed interface")


def test_the_console_assets_load_nothing_from_elsewhere(server):
    with urllib.request.urlopen(f"{base(server)}/console/projects/{PROJECT}/domains/{DOMAIN}/executions", timeout=10) as resp:
        html = resp.read().decode()
        assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    for asset in ("app.js", "app.css"):
        with urllib.request.urlopen(f"{base(server)}/console/assets/{asset}", timeout=10) as resp:
            body = resp.read().decode()
        assert "http://" not in body.replace("http://www.w3.org/2000/svg", "") and "https://" not in body, asset
    assert "http" not in html.replace("http-equiv", "")
