// Placeholder entry for the page; the preact UI and the worker come with the browser node.
const app = document.getElementById('app');
if (app) app.dataset['ready'] = 'true';
