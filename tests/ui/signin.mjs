// Signing in to a server that requires it: a page asks to sign in, a wrong password is
// refused, the right one opens the page asked for; uploads (htmx) and forms (plain posts)
// carry the session's CSRF token, a form posted without it is refused, and signing out
// closes the session.
//
//   node tests/ui/signin.mjs BASE_URL SCREENSHOT_DIR HELLO_FXPKG
import { run, check, shot } from "./lib.mjs";

const [base, shots, helloPackage] = process.argv.slice(2);
const PASSWORD = "correct horse battery staple";

async function signIn(page, password) {
  await page.getByLabel("Account").fill("admin");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

await run(async (page) => {
  await page.goto(`${base}/packages`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  check(page.url().includes("/login?next=%2Fpackages"), `asked to sign in: ${page.url()}`);
  await signIn(page, "not the password");
  await page.locator("#login-error").waitFor();
  check((await page.locator("#login-error").textContent()).includes("Wrong account name or password"),
    "a wrong password is refused");
  await shot(page, shots, "signin-refused");

  await signIn(page, PASSWORD);
  await page.waitForURL(`${base}/packages`);
  await page.locator("#signout button").waitFor({ state: "visible" });
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "fx_session");
  check(session && session.httpOnly && session.sameSite === "Lax", `an HttpOnly session cookie: ${JSON.stringify(cookies)}`);

  // An htmx upload carries the token in a header.
  await page.setInputFiles("#package-file", helloPackage);
  await page.getByRole("button", { name: "Upload", exact: true }).click();
  await page.locator("text=uploaded hello@1.0.0").waitFor();

  // A plain form carries it in a hidden field.
  await page.goto(`${base}/handlers/new?package=hello`);
  await page.getByLabel("Name", { exact: true }).fill("hello-signed");
  await page.getByLabel("value of condition 1").fill("com.example.hello");
  await page.getByRole("button", { name: "Create handler" }).click();
  await page.locator("text=saved handler hello-signed").waitFor();
  await shot(page, shots, "signed-in-handlers");

  // A form posted without the token (as a forged one would be) is refused.
  await page.evaluate(() => {
    const form = document.createElement("form");
    form.method = "post";
    form.action = "/handlers/hello-signed/toggle";
    document.body.appendChild(form);
    form.submit(); // no submit event: nothing adds the token
  });
  await page.locator("text=CSRF").waitFor();
  check((await page.locator("main").textContent()).includes("403"), "the forged form gets 403");
  const handler = await (await page.request.get(`${base}/api/v1/handlers/hello-signed`)).json();
  check(handler.handler && handler.handler.enabled === true,
    `the forged form changed nothing: ${JSON.stringify(handler)}`);

  // Signing out ends the session.
  await page.goto(`${base}/handlers`);
  await page.locator("#signout button").click();
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  await page.goto(`${base}/handlers`);
  await page.getByRole("heading", { name: "Sign in" }).waitFor();
  check(page.url().includes("/login"), "signed out: the page asks to sign in again");
});
